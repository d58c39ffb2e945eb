// Package cpuinfotest makes CPU descriptions for tests: CRIU cpuinfo images of CPUs that are
// not this one.
package cpuinfotest

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Richer returns a copy of a cpuinfo.img (from `criu cpuinfo dump`) that claims every x86
// feature bit: a CPU no real host matches. The image is CRIU's format: two magic words, then
// one entry (u32 size + protobuf cpuinfo_entry), whose x86_entry (field 1) lists its capability
// words as field 6.
func Richer(img []byte) ([]byte, error) {
	if len(img) < 12 || int(binary.LittleEndian.Uint32(img[8:12])) != len(img)-12 {
		return nil, fmt.Errorf("unexpected cpuinfo.img layout (%d bytes)", len(img))
	}
	entry, err := rewrite(img[12:], func(num protowire.Number, typ protowire.Type, v []byte) ([]byte, error) {
		if num != 1 || typ != protowire.BytesType {
			return nil, nil
		}
		x86, err := rewrite(v, func(num protowire.Number, typ protowire.Type, _ []byte) ([]byte, error) {
			if num != 6 || typ != protowire.VarintType {
				return nil, nil
			}
			return protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 0xffffffff), nil
		})
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), x86), err
	})
	if err != nil {
		return nil, err
	}
	out := binary.LittleEndian.AppendUint32(append([]byte{}, img[:8]...), uint32(len(entry)))
	return append(out, entry...), nil
}

// rewrite copies a protobuf message field by field; f may return a replacement for a field
// (its tag included), or nil to keep it. v is a length-delimited field's payload.
func rewrite(msg []byte, f func(protowire.Number, protowire.Type, []byte) ([]byte, error)) ([]byte, error) {
	var out []byte
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		var payload []byte
		if typ == protowire.BytesType {
			payload, _ = protowire.ConsumeBytes(msg[n:])
		}
		r, err := f(num, typ, payload)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = msg[:n+m]
		}
		out = append(out, r...)
		msg = msg[n+m:]
	}
	return out, nil
}
