package nlmsg

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// decodeData decodes an NFTA_DATA nest: exactly one of NFTA_DATA_VALUE
// (returned as value) or NFTA_DATA_VERDICT (returned as verdict).
func decodeData(b []byte) (value []byte, verdict *Verdict, err error) {
	a, err := parseAttrs(b)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case a.has(unix.NFTA_DATA_VALUE) && a.has(unix.NFTA_DATA_VERDICT):
		return nil, nil, fmt.Errorf("both NFTA_DATA_VALUE and NFTA_DATA_VERDICT")
	case a.has(unix.NFTA_DATA_VALUE):
		v := a.bytes(unix.NFTA_DATA_VALUE)
		if len(v) == 0 {
			return nil, nil, fmt.Errorf("NFTA_DATA_VALUE: empty")
		}
		return v, nil, nil
	case a.has(unix.NFTA_DATA_VERDICT):
		v, err := decodeVerdict(a.byType[unix.NFTA_DATA_VERDICT])
		if err != nil {
			return nil, nil, fmt.Errorf("NFTA_DATA_VERDICT: %w", err)
		}
		return nil, v, nil
	}
	return nil, nil, fmt.Errorf("neither NFTA_DATA_VALUE nor NFTA_DATA_VERDICT")
}

// decodeValue decodes an NFTA_DATA nest that must hold a value.
func decodeValue(b []byte) ([]byte, error) {
	v, verdict, err := decodeData(b)
	if err != nil {
		return nil, err
	}
	if verdict != nil {
		return nil, fmt.Errorf("verdict where a value is expected")
	}
	return v, nil
}

func decodeVerdict(b []byte) (*Verdict, error) {
	a, err := parseAttrs(b)
	if err != nil {
		return nil, err
	}
	v := &Verdict{
		Code:    int32(a.reqU32(unix.NFTA_VERDICT_CODE, "NFTA_VERDICT_CODE")),
		Chain:   a.str(unix.NFTA_VERDICT_CHAIN),
		ChainID: a.u32(nftaVerdictChainID, "NFTA_VERDICT_CHAIN_ID"),
	}
	if a.err != nil {
		return nil, a.err
	}
	if (v.Code == VerdictJump || v.Code == VerdictGoto) && v.Chain == "" && v.ChainID == 0 {
		return nil, fmt.Errorf("%s without NFTA_VERDICT_CHAIN", verdictName(v.Code))
	}
	return v, nil
}

func verdictName(code int32) string {
	switch code {
	case VerdictDrop:
		return "drop"
	case VerdictAccept:
		return "accept"
	case VerdictQueue:
		return "queue"
	case VerdictContinue:
		return "continue"
	case VerdictBreak:
		return "break"
	case VerdictJump:
		return "jump"
	case VerdictGoto:
		return "goto"
	case VerdictReturn:
		return "return"
	}
	return fmt.Sprintf("verdict(%d)", code)
}

// String returns the verdict in nft syntax ("accept", "jump chain", …).
func (v *Verdict) String() string {
	if v.Code == VerdictJump || v.Code == VerdictGoto {
		if v.Chain == "" {
			return fmt.Sprintf("%s chain-id %d", verdictName(v.Code), v.ChainID)
		}
		return verdictName(v.Code) + " " + v.Chain
	}
	return verdictName(v.Code)
}
