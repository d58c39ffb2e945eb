// Command ferry-workload is the lab's test workload. It holds N MiB of pseudo-random memory whose
// every page can be re-derived (seed, page index, generation), dirties pages at a set rate,
// re-verifies all pages continuously, keeps an in-memory counter, appends that counter to a file
// in its writable layer, and publishes its state (lab/workloadstate) for `ferry-lab check`.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	ws "github.com/ferry-project/ferry/lab/workloadstate"
)

const pageSize = 4096

type memory struct {
	seed  uint64
	buf   []byte
	gen   []uint32
	pages int
}

// fill writes the expected content of page i at its current generation into dst.
func (m *memory) expected(i int, dst []uint64) {
	x := m.seed ^ uint64(i)*0x9E3779B97F4A7C15 ^ uint64(m.gen[i])*0xD1B54A32D192ED03
	for k := range dst {
		x += 0x9E3779B97F4A7C15 // splitmix64
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		dst[k] = z ^ (z >> 31)
	}
}

func (m *memory) page(i int) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&m.buf[i*pageSize])), pageSize/8)
}

func (m *memory) dirty(i int) {
	m.gen[i]++
	m.expected(i, m.page(i))
}

func (m *memory) verify(i int, scratch []uint64) bool {
	m.expected(i, scratch)
	p := m.page(i)
	for k := range scratch {
		if p[k] != scratch[k] {
			return false
		}
	}
	return true
}

func main() {
	memMiB := flag.Int("mem", 64, "MiB of memory to hold")
	dirty := flag.Float64("dirty", 1, "MiB/s of memory to rewrite")
	statePath := flag.String("state", ws.StatePath, "state file")
	ticksPath := flag.String("ticks", ws.TicksPath, "ticks file (append-only, in the writable layer)")
	volume := flag.String("volume", "", "directory of a volume to write to (blocks and a log)")
	volumeMiB := flag.Int("volume-mib", 64, "MiB of blocks on the volume")
	listen := flag.String("listen", "", "TCP address to serve sessions on (each line in: one numbered line out)")
	flag.Parse()
	if *listen != "" {
		if err := serveSessions(*listen); err != nil {
			fmt.Fprintln(os.Stderr, "ferry-workload:", err)
			os.Exit(1)
		}
	}
	if err := run(*memMiB, *dirty, *statePath, *ticksPath, *volume, *volumeMiB); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-workload:", err)
		os.Exit(1)
	}
}

func run(memMiB int, dirtyRate float64, statePath, ticksPath, volDir string, volMiB int) error {
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return err
	}
	m := &memory{seed: binary.LittleEndian.Uint64(nb[8:]), pages: memMiB << 20 / pageSize}
	m.buf = make([]byte, m.pages*pageSize)
	m.gen = make([]uint32, m.pages)
	for i := 0; i < m.pages; i++ {
		m.expected(i, m.page(i))
	}
	st := ws.State{
		Nonce: hex.EncodeToString(nb[:8]), PID: os.Getpid(), StartedUnixMs: time.Now().UnixMilli(),
		MemMiB: memMiB, DirtyMiBs: dirtyRate, Pages: m.pages,
	}
	for _, p := range []string{statePath, ticksPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
	}
	ticks, err := os.OpenFile(ticksPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer ticks.Close()
	var vol *volume
	if volDir != "" {
		if vol, err = openVolume(volDir, volMiB, m.seed^0x5DEECE66D); err != nil {
			return err
		}
		defer vol.close()
		st.VolumeMiB = volMiB
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	// Per tick: dirty rate*tick bytes of random pages, verify a slice of pages.
	dirtyPerTick := dirtyRate * (1 << 20) / pageSize * ws.TickEvery.Seconds()
	verifyPerTick := max(64, m.pages/500) // a full pass every ~5 s (check asks for a full one on demand)
	var dirtyDebt float64
	rng := m.seed | 1
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	scratch := make([]uint64, pageSize/8)
	cursor := 0
	passStart := time.Now().UnixMilli()
	tick := time.NewTicker(ws.TickEvery)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			return nil
		case <-tick.C:
		}
		st.Counter++
		if id, err := os.ReadFile(filepath.Join(filepath.Dir(statePath), filepath.Base(ws.VerifyPath))); err == nil && len(bytes.TrimSpace(id)) > 0 {
			st.Verify = verifyAll(m, vol, strings.TrimSpace(string(id)), scratch)
			_ = os.Remove(filepath.Join(filepath.Dir(statePath), filepath.Base(ws.VerifyPath)))
			st.UpdatedUnixMs = time.Now().UnixMilli()
			_ = publish(statePath, &st)
		}
		if vol != nil {
			vol.tick(&st, next)
		}
		for dirtyDebt += dirtyPerTick; dirtyDebt >= 1; dirtyDebt-- {
			m.dirty(int(next() % uint64(m.pages)))
			st.DirtiedPages++
		}
		for n := 0; n < verifyPerTick; n++ {
			if !m.verify(cursor, scratch) {
				st.Errors++
				if st.FirstError == "" {
					st.FirstError = fmt.Sprintf("page %d (generation %d) at counter %d", cursor, m.gen[cursor], st.Counter)
				}
			}
			if cursor++; cursor == m.pages {
				cursor = 0
				st.VerifyPasses++
				st.LastPassStart = passStart
				st.LastPassUnixMs = time.Now().UnixMilli()
				passStart = st.LastPassUnixMs
			}
		}
		if st.Counter%ws.Publish == 0 {
			if _, err := ticks.WriteString(strconv.FormatUint(st.Counter, 10) + "\n"); err != nil {
				st.TicksError = err.Error()
			} else {
				st.TicksLines++
			}
			if vol != nil {
				vol.logCounter(&st)
			}
			st.UpdatedUnixMs = time.Now().UnixMilli()
			if err := publish(statePath, &st); err != nil {
				fmt.Fprintln(os.Stderr, "ferry-workload: publish:", err)
			}
		}
	}
}

// verifyAll checks every memory page and every volume block now.
func verifyAll(m *memory, vol *volume, id string, scratch []uint64) *ws.Verification {
	start := time.Now()
	v := &ws.Verification{ID: id}
	for i := 0; i < m.pages; i++ {
		if !m.verify(i, scratch) {
			v.MemErrors++
			if v.FirstError == "" {
				v.FirstError = fmt.Sprintf("memory page %d", i)
			}
		}
	}
	if vol != nil {
		n, first := vol.verifyAll()
		v.VolErrors = n
		if v.FirstError == "" {
			v.FirstError = first
		}
	}
	v.Ms = time.Since(start).Milliseconds()
	return v
}

func publish(path string, st *ws.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return ws.WriteFile(path, b)
}
