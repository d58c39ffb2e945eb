// Package zfsshim makes zfs-fuse's CLI look enough like OpenZFS's for go-zfs/v3 and ferry, in the
// lab and tests only (never in the product path). It is installed as `zfs` first on a lab host's
// PATH and execs the real /usr/sbin/zfs:
//
//   - `zfs list -p …` (zfs-fuse has no -p): names from `zfs list -H -o name`, values from
//     `zfs get -Hp`; properties zfs-fuse lacks (written, logicalused) print as "-".
//   - `zfs get` without -p prints sizes and guids humanized on zfs-fuse ("280P"): -p is added.
//   - `zfs receive -u` (zfs-fuse knows only -vnF): -u is dropped. The lab's parent datasets have
//     mountpoint=none, so a received dataset is not mounted either way.
package zfsshim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Real is the zfs-fuse CLI.
var Real = "/usr/sbin/zfs"

var numeric = map[string]bool{
	"used": true, "available": true, "volsize": true, "quota": true, "referenced": true,
	"written": true, "logicalused": true, "usedbydataset": true, "guid": true, "createtxg": true,
}

var unsupported = map[string]bool{"written": true, "logicalused": true}

// Main runs the shim with args (without argv[0]) and returns the exit status.
func Main(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "list":
			if hasFlag(args[1:], 'p') {
				return list(args[1:])
			}
		case "get":
			if !hasFlag(args[1:], 'p') {
				args = append([]string{"get", "-p"}, args[1:]...)
			}
		case "receive", "recv":
			args = dropFlag(args, 'u')
		}
	}
	err := syscall.Exec(Real, append([]string{"zfs"}, args...), os.Environ())
	fmt.Fprintln(os.Stderr, "zfs shim:", err)
	return 127
}

// hasFlag reports whether a short flag appears in the option words before the operands.
func hasFlag(args []string, f byte) bool {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		if strings.ContainsRune(a[1:], rune(f)) && !strings.ContainsAny(a, "=,") {
			return true
		}
	}
	return false
}

// dropFlag removes a short flag from every option word.
func dropFlag(args []string, f byte) []string {
	out := []string{args[0]}
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") && len(a) > 1 && !strings.ContainsAny(a, "=,/@") {
			a = "-" + strings.ReplaceAll(a[1:], string(f), "")
			if a == "-" {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// list emulates `zfs list [-r] [-d N] -Hp [-t T] -o props [name...]`.
func list(args []string) int {
	var flags []string // passed to `zfs list` for the names
	var props []string
	var names []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			props = strings.Split(args[i+1], ",")
			i++
		case (a == "-t" || a == "-d" || a == "-s" || a == "-S") && i+1 < len(args):
			flags = append(flags, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			if f := strings.NewReplacer("p", "", "H", "").Replace(a); f != "-" {
				flags = append(flags, f)
			}
		default:
			names = append(names, a)
		}
	}
	if len(props) == 0 {
		props = []string{"name", "used", "available", "referenced", "mountpoint"}
	}
	out, err := run(append(append(append([]string{"list", "-H"}, flags...), "-o", "name"), names...)...)
	if err != nil {
		return 1
	}
	datasets := strings.Fields(string(out))
	if len(datasets) == 0 {
		return 0
	}
	var ask []string
	for _, p := range props {
		if p != "name" && !unsupported[p] {
			ask = append(ask, p)
		}
	}
	values := map[string]map[string]string{}
	if len(ask) > 0 {
		out, err := run(append([]string{"get", "-Hp", "-o", "name,property,value", strings.Join(ask, ",")}, datasets...)...)
		if err != nil {
			return 1
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.SplitN(l, "\t", 3)
			if len(f) != 3 {
				continue
			}
			if values[f[0]] == nil {
				values[f[0]] = map[string]string{}
			}
			values[f[0]][f[1]] = f[2]
		}
	}
	var b bytes.Buffer
	for _, ds := range datasets {
		row := make([]string, len(props))
		for i, p := range props {
			v, ok := values[ds][p]
			switch {
			case p == "name":
				v = ds
			case !ok || v == "" || (numeric[p] && !isDigits(v)):
				v = "-"
			}
			row[i] = v
		}
		b.WriteString(strings.Join(row, "\t") + "\n")
	}
	_, _ = os.Stdout.Write(b.Bytes())
	return 0
}

func run(args ...string) ([]byte, error) {
	cmd := exec.Command(Real, args...)
	cmd.Stderr = os.Stderr
	return cmd.Output()
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
