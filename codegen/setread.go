package codegen

import (
	"errors"
	"reflect"

	"github.com/cilium/ebpf"
)

// batchRead returns the entries of a hash map read with
// BPF_MAP_LOOKUP_BATCH, batchChunk at a time: a few system calls for a
// million entries instead of two per entry. It fails for maps that take
// no batches (LPM tries); the caller then iterates.
func batchRead(m *ebpf.Map) (keys, values [][]byte, err error) {
	if m.Type() != ebpf.Hash {
		return nil, nil, errors.ErrUnsupported
	}
	ks, vs := int(m.KeySize()), int(m.ValueSize())
	byteType := reflect.TypeFor[byte]()
	kbuf := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(ks, byteType)), batchChunk, batchChunk)
	vbuf := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(vs, byteType)), batchChunk, batchChunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, kbuf.Interface(), vbuf.Interface(), nil)
		for i := 0; i < n; i++ {
			k := make([]byte, ks)
			reflect.Copy(reflect.ValueOf(k), kbuf.Index(i))
			v := make([]byte, vs)
			reflect.Copy(reflect.ValueOf(v), vbuf.Index(i))
			keys = append(keys, k)
			values = append(values, v)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, values, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}
