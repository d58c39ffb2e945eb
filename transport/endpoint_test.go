package transport

import "testing"

func TestParseEndpoint(t *testing.T) {
	ok := map[string]Endpoint{
		"b":                 {User: "*", Host: "b", Port: 22},
		"root@b":            {User: "root", Host: "b", Port: 22},
		"ops@10.1.2.3:2222": {User: "ops", Host: "10.1.2.3", Port: 2222},
		"[::1]:2200":        {User: "*", Host: "::1", Port: 2200},
		"[fe80::1]":         {User: "*", Host: "fe80::1", Port: 22},
		"root@[::1]":        {User: "root", Host: "::1", Port: 22},
	}
	for in, want := range ok {
		got, err := ParseEndpoint(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if want.User == "*" {
			want.User = got.User
		}
		if got != want {
			t.Errorf("%q = %+v, want %+v", in, got, want)
		}
	}
	for _, in := range []string{"", "@b", "b:0", "b:99999", "b:x", "a b", "root@"} {
		if _, err := ParseEndpoint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
