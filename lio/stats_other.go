//go:build !unix

package lio

import "os"

func readInto(p string, buf []byte) ([]byte, error) {
	b, err := os.ReadFile(p)
	return append(buf[:0], b...), err
}
