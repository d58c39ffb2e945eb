package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	ws "github.com/ferry-project/ferry/lab/workloadstate"
)

const blockSize = 4096

// volume is a file of blocks whose content is derived from (seed, block, generation), rewritten
// one block per tick through a file descriptor held open (so CRIU must find the same file, same
// size, on restore), plus a log of counters appended like the ticks file.
type volume struct {
	f, log *os.File
	seed   uint64
	gen    []uint32
	cursor int
	buf    []byte
	want   []byte
}

// openFile opens a plain blocking file descriptor, as most programs do. os.OpenFile would put it
// in Go's epoll poller when the filesystem allows it (FUSE does), and CRIU cannot restore that
// registration onto a filesystem whose files cannot be polled (ext4, OpenZFS).
func openFile(path string, flags int) (*os.File, error) {
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func openVolume(dir string, mib int, seed uint64) (*volume, error) {
	f, err := openFile(filepath.Join(dir, "blocks"), os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	log, err := openFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("volume: %w", err)
	}
	v := &volume{f: f, log: log, seed: seed, gen: make([]uint32, mib<<20/blockSize), buf: make([]byte, blockSize), want: make([]byte, blockSize)}
	chunk := make([]byte, 1<<20)
	for off := 0; off < mib<<20; off += len(chunk) {
		for b := 0; b < len(chunk)/blockSize; b++ {
			v.expected(off/blockSize+b, chunk[b*blockSize:(b+1)*blockSize])
		}
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			v.close()
			return nil, fmt.Errorf("volume: fill: %w", err)
		}
	}
	return v, f.Sync()
}

func (v *volume) close() { v.f.Close(); v.log.Close() }

func (v *volume) expected(block int, dst []byte) {
	x := v.seed ^ uint64(block)*0x9E3779B97F4A7C15 ^ uint64(v.gen[block])*0xD1B54A32D192ED03
	for i := 0; i < len(dst); i += 8 {
		x += 0x9E3779B97F4A7C15
		z := (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(dst[i:], z^(z>>31))
	}
}

func (v *volume) check(block int) bool {
	if _, err := v.f.ReadAt(v.buf, int64(block)*blockSize); err != nil {
		return false
	}
	v.expected(block, v.want)
	return string(v.buf) == string(v.want)
}

// tick rewrites one random block and re-verifies a few.
func (v *volume) tick(st *ws.State, rnd func() uint64) {
	b := int(rnd() % uint64(len(v.gen)))
	v.gen[b]++
	v.expected(b, v.want)
	if _, err := v.f.WriteAt(v.want, int64(b)*blockSize); err != nil {
		st.VolumeError = err.Error()
		return
	}
	for i := 0; i < 16; i++ {
		if !v.check(v.cursor) {
			st.VolumeErrors++
			if st.VolumeFirstError == "" {
				st.VolumeFirstError = fmt.Sprintf("block %d (generation %d) at counter %d", v.cursor, v.gen[v.cursor], st.Counter)
			}
		}
		v.cursor = (v.cursor + 1) % len(v.gen)
	}
}

func (v *volume) logCounter(st *ws.State) {
	if _, err := v.log.WriteString(strconv.FormatUint(st.Counter, 10) + "\n"); err != nil {
		st.VolumeError = err.Error()
		return
	}
	st.VolumeLogLines++
}

// verifyAll checks every block and returns the number that differ and the first one.
func (v *volume) verifyAll() (uint64, string) {
	var n uint64
	first := ""
	for b := range v.gen {
		if !v.check(b) {
			n++
			if first == "" {
				first = fmt.Sprintf("volume block %d", b)
			}
		}
	}
	return n, first
}
