package lio

import "syscall"

func isConfigfs(root string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return false
	}
	return uint64(st.Type) == configfsMagic
}
