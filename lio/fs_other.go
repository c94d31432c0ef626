//go:build !linux

package lio

// isConfigfs is always false off Linux: there is no LIO, only emulation.
func isConfigfs(string) bool { return false }
