package wire

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the receiver's decoder: it must never panic, never allocate
// beyond the frame limit, and every accepted message must re-encode.
func FuzzDecode(f *testing.F) {
	seed := func(typ byte, p string) []byte {
		var b bytes.Buffer
		_ = WriteFrame(&b, typ, []byte(p))
		return b.Bytes()
	}
	f.Add(seed(FrameMessage, `{"type":"hello","body":{"protocol":1,"version":"0.1.0","host":"a","features":["fs:rsync"]}}`))
	f.Add(seed(FrameMessage, `{"type":"stream","body":{"token":"t","kind":"rsync","name":"rootfs","args":["--server","."]}}`))
	f.Add(seed(FrameMessage, `{"type":"prepare","error":{"code":"conflict","message":"taken"}}`))
	f.Add(seed(FrameData, "abc"))
	f.Add([]byte{FrameMessage, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewConnRW(bytes.NewReader(in), &bytes.Buffer{}, nil)
		for i := 0; i < 4; i++ {
			env, err := c.Recv()
			if err != nil {
				return
			}
			for _, v := range []any{&Hello{}, &StreamHeader{}, &PreflightRequest{}, &PrepareRequest{}, &RestoreRequest{}} {
				_ = env.Decode(v)
			}
			var out bytes.Buffer
			if err := NewConnRW(bytes.NewReader(nil), &out, nil).sendEnvelope(env); err != nil {
				t.Fatalf("accepted envelope does not re-encode: %v", err)
			}
		}
	})
}
