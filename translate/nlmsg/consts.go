package nlmsg

import "golang.org/x/sys/unix"

// nf_tables attribute numbers that golang.org/x/sys/unix does not define
// (from include/uapi/linux/netfilter/nf_tables.h).
const (
	nftaListElem = unix.NFTA_LIST_ELEM

	nftaTableHandle   = 0x4
	nftaTableUserdata = 0x6

	nftaChainFlags    = 0xa
	nftaChainID       = 0xb
	nftaChainUserdata = 0xc

	nftaHookDevs = 0x4

	nftaDeviceName   = 0x1
	nftaDevicePrefix = 0x2

	nftaRuleID = 0x9

	nftaSetHandle      = 0x10
	nftaSetExpr        = 0x11
	nftaSetExpressions = 0x12

	nftaSetDescConcat = 0x2
	nftaSetFieldLen   = 0x1

	nftaSetElemKeyEnd      = 0xa
	nftaSetElemExpressions = 0xb

	nftaVerdictChainID = 0x3

	nftaBitwiseOp    = 0x6
	nftaBitwiseData  = 0x7
	nftaBitwiseSreg2 = 0x8

	// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
	// attribute type.
	nlaTypeMask = 0x3fff
)

// Bitwise operations (enum nft_bitwise_ops).
const (
	BitwiseMaskXor uint32 = 0
	BitwiseLShift  uint32 = 1
	BitwiseRShift  uint32 = 2
	BitwiseAnd     uint32 = 3
	BitwiseOr      uint32 = 4
	BitwiseXor     uint32 = 5
)

// Set element flags (enum nft_set_elem_flags).
const (
	SetElemIntervalEnd uint32 = 0x1
	SetElemCatchall    uint32 = 0x2
)

// Chain flags (enum nft_chain_flags).
const (
	ChainBase      uint32 = 0x1
	ChainHWOffload uint32 = 0x2
	ChainBinding   uint32 = 0x4
)
