package nftfile

import "unsafe"

// unsafePointer returns a pointer to b's first byte, to store a host-endian
// integer the way the kernel puts an ifindex in a register.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
