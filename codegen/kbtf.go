package codegen

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// kernelBTF gives struct member offsets and kfunc ids from the running
// kernel's BTF. It is loaded once.
var kernelBTF = struct {
	once sync.Once
	spec *btf.Spec
	err  error
}{}

func loadKernelBTF() (*btf.Spec, error) {
	kernelBTF.once.Do(func() {
		kernelBTF.spec, kernelBTF.err = btf.LoadKernelSpec()
	})
	if kernelBTF.err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", kernelBTF.err)
	}
	return kernelBTF.spec, nil
}

// member describes a struct member located in kernel BTF.
type member struct {
	Off     int16 // byte offset of the member (of its containing byte for bitfields)
	Size    int   // size in bytes (0 for bitfields)
	BitOff  uint32
	BitSize uint32 // nonzero for bitfields: bit offset within the byte at Off
}

// kernelMember finds member name of struct structName, looking through
// anonymous structs and unions.
func kernelMember(structName, name string) (member, error) {
	spec, err := loadKernelBTF()
	if err != nil {
		return member{}, err
	}
	var st *btf.Struct
	if err := spec.TypeByName(structName, &st); err != nil {
		return member{}, fmt.Errorf("kernel BTF: struct %s: %w", structName, err)
	}
	bits, m, ok := findMember(st.Members, name, 0)
	if !ok {
		return member{}, fmt.Errorf("kernel BTF: struct %s has no member %s", structName, name)
	}
	if m.BitfieldSize != 0 {
		return member{Off: int16(bits / 8), BitOff: uint32(bits % 8), BitSize: uint32(m.BitfieldSize)}, nil
	}
	sz, err := btf.Sizeof(m.Type)
	if err != nil {
		return member{}, fmt.Errorf("kernel BTF: %s.%s: %w", structName, name, err)
	}
	return member{Off: int16(bits / 8), Size: sz}, nil
}

func findMember(ms []btf.Member, name string, base btf.Bits) (btf.Bits, btf.Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return base + m.Offset, m, true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if off, mm, ok := findMember(t.Members, name, base+m.Offset); ok {
				return off, mm, true
			}
		case *btf.Union:
			if off, mm, ok := findMember(t.Members, name, base+m.Offset); ok {
				return off, mm, true
			}
		}
	}
	return 0, btf.Member{}, false
}

// kfuncID returns the BTF id of a kernel function.
func kfuncID(name string) (int64, error) {
	spec, err := loadKernelBTF()
	if err != nil {
		return 0, err
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err != nil {
		return 0, fmt.Errorf("kernel BTF: kfunc %s: %w", name, err)
	}
	id, err := spec.TypeID(fn)
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: kfunc %s: %w", name, err)
	}
	return int64(id), nil
}
