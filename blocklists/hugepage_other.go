//go:build !linux

package blocklists

func adviseHugePages[T any]([]T) {}
