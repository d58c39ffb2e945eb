package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RedisPort is where a lab Redis container (ferry-lab run --net --redis) listens.
const RedisPort = 6379

// RedisArgs is the command of a lab Redis container: Debian's redis-server, in memory only (no
// RDB or AOF file: the keys live in the process, so what survives a move is what CRIU carried).
func RedisArgs() []string {
	return []string{RedisServer, "--port", strconv.Itoa(RedisPort), "--bind", "0.0.0.0", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"}
}

// DialFromSwitch opens a TCP connection from the lab's switch, where clients of the lab's
// containers live, so the connection follows the switch's routes like a real client's.
func DialFromSwitch(ctx context.Context, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
		f, err := os.Open("/run/netns/" + switchNS)
		if err != nil {
			ch <- res{nil, fmt.Errorf("the lab's switch: %w", err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, fmt.Errorf("enter the lab's switch: %w", err)}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		d.SetMultipathTCP(false)
		c, err := d.DialContext(ctx, "tcp", addr)
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// RedisAddr is the address of the lab Redis container name.
func RedisAddr(name string) (string, error) {
	ip, ok := ContainerIP(name)
	if !ok {
		return "", fmt.Errorf("%s has no lab address (was it started with ferry-lab run --net --redis?)", name)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(RedisPort)), nil
}

// redisConn is a minimal RESP2 client: enough to load, read and count.
type redisConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// dialRedis connects from the switch, retrying while the server starts.
func dialRedis(ctx context.Context, addr string) (*redisConn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := DialFromSwitch(ctx, addr)
		if err == nil {
			rc := &redisConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
			if _, err = rc.do("PING"); err == nil {
				return rc, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("redis at %s: %w", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (rc *redisConn) Close() error { return rc.c.Close() }

func (rc *redisConn) send(args ...string) error {
	fmt.Fprintf(rc.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(rc.w, "$%d\r\n%s\r\n", len(a), a)
	}
	return nil
}

// redisError is an error reply (-ERR …).
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// reply reads one reply: string (simple or bulk), int64, nil (null bulk), []any, or redisError
// as the error.
func (rc *redisConn) reply() (any, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("redis: malformed reply %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, redisError(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 512<<20 {
			return nil, fmt.Errorf("redis: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("redis: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = rc.reply(); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("redis: unknown reply type %q", line)
}

func (rc *redisConn) do(args ...string) (any, error) {
	if err := rc.send(args...); err != nil {
		return nil, err
	}
	if err := rc.w.Flush(); err != nil {
		return nil, err
	}
	return rc.reply()
}

func (rc *redisConn) int(args ...string) (int64, error) {
	v, err := rc.do(args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("redis %s: want an integer, got %v", args[0], v)
	}
	return n, nil
}

// RedisKey and RedisValue are the keys RedisLoad writes: every value derives from its key, so
// RedisVerify can check each one without keeping a copy.
func RedisKey(i int) string { return fmt.Sprintf("key:%07d", i) }

// RedisValue is key i's value (48 bytes).
func RedisValue(i int) string {
	return fmt.Sprintf("value-%07d-%034x", i, uint64(i)*0x9e3779b97f4a7c15)
}

// RedisLoad writes keys 0..n-1 (pipelined, 1000 per round trip) after flushing the database.
func RedisLoad(ctx context.Context, addr string, n int) error {
	rc, err := dialRedis(ctx, addr)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := rc.do("FLUSHALL"); err != nil {
		return err
	}
	for lo := 0; lo < n; lo += 1000 {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+1000, n)
		args := []string{"MSET"}
		for i := lo; i < hi; i++ {
			args = append(args, RedisKey(i), RedisValue(i))
		}
		if _, err := rc.do(args...); err != nil {
			return fmt.Errorf("load keys %d-%d: %w", lo, hi-1, err)
		}
	}
	return nil
}

// RedisVerify reads every key RedisLoad wrote and compares its value; it returns the number of
// keys checked, and an error naming the first few that are missing or wrong.
func RedisVerify(ctx context.Context, addr string, n int) (int, error) {
	rc, err := dialRedis(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var bad []string
	checked := 0
	for lo := 0; lo < n; lo += 1000 {
		if err := ctx.Err(); err != nil {
			return checked, err
		}
		hi := min(lo+1000, n)
		args := []string{"MGET"}
		for i := lo; i < hi; i++ {
			args = append(args, RedisKey(i))
		}
		v, err := rc.do(args...)
		if err != nil {
			return checked, err
		}
		vals, ok := v.([]any)
		if !ok || len(vals) != hi-lo {
			return checked, fmt.Errorf("MGET of %d keys: got %v", hi-lo, v)
		}
		for j, val := range vals {
			checked++
			if s, _ := val.(string); s != RedisValue(lo+j) && len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("%s = %v", RedisKey(lo+j), val))
			}
		}
	}
	if len(bad) > 0 {
		return checked, fmt.Errorf("keys missing or wrong: %v", bad)
	}
	return checked, nil
}

// RedisWatchResult is what one persistent client connection saw.
type RedisWatchResult struct {
	Addr           string  `json:"addr"`
	Requests       int64   `json:"requests"`         // commands answered
	LongestGapMs   float64 `json:"longest_gap_ms"`   // longest time between two answers: client-observed downtime
	ClientIDBefore int64   `json:"client_id_before"` // CLIENT ID when the watch began…
	ClientIDAfter  int64   `json:"client_id_after"`  // …and when it stopped, on the same socket
	SameConnection bool    `json:"same_connection"`  // one TCP connection throughout, same server-side client
	Counter        int64   `json:"counter"`          // the INCR counter's last value (each answer was the previous + 1)
	Error          string  `json:"error,omitempty"`
}

// RedisWatch is a client that keeps one connection to Redis and issues a command every
// interval: INCR of a counter (each answer must be the previous + 1) alternating with GET of
// a loaded key (compared with its value). It measures the longest wait between answers.
type RedisWatch struct {
	rc       *redisConn
	keys     int
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	res      RedisWatchResult
}

// StartRedisWatch connects and starts issuing commands; keys is how many RedisLoad wrote.
func StartRedisWatch(ctx context.Context, addr string, keys int, interval time.Duration) (*RedisWatch, error) {
	rc, err := dialRedis(ctx, addr)
	if err != nil {
		return nil, err
	}
	id, err := rc.int("CLIENT", "ID")
	if err != nil {
		rc.Close()
		return nil, err
	}
	counter, err := rc.int("INCR", "ferry:watch")
	if err != nil {
		rc.Close()
		return nil, err
	}
	w := &RedisWatch{rc: rc, keys: keys, interval: interval, stop: make(chan struct{}), done: make(chan struct{}),
		res: RedisWatchResult{Addr: addr, ClientIDBefore: id, Counter: counter, Requests: 2}}
	go w.loop()
	return w, nil
}

func (w *RedisWatch) loop() {
	defer close(w.done)
	last := time.Now()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		// A dead connection must not hang the client forever: a reply takes at most this long.
		_ = w.rc.c.SetDeadline(time.Now().Add(2 * time.Minute))
		err := w.step(i)
		now := time.Now()
		w.mu.Lock()
		if err != nil {
			w.res.Error = err.Error()
			w.mu.Unlock()
			return
		}
		w.res.Requests++
		if gap := float64(now.Sub(last).Microseconds()) / 1000; gap > w.res.LongestGapMs {
			w.res.LongestGapMs = gap
		}
		w.mu.Unlock()
		last = now
	}
}

func (w *RedisWatch) step(i int) error {
	if i%2 == 1 && w.keys > 0 {
		k := rand.IntN(w.keys)
		v, err := w.rc.do("GET", RedisKey(k))
		if err != nil {
			return fmt.Errorf("GET %s: %w", RedisKey(k), err)
		}
		if s, _ := v.(string); s != RedisValue(k) {
			return fmt.Errorf("GET %s = %v, want %s", RedisKey(k), v, RedisValue(k))
		}
		return nil
	}
	n, err := w.rc.int("INCR", "ferry:watch")
	if err != nil {
		return fmt.Errorf("INCR: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n != w.res.Counter+1 {
		return fmt.Errorf("INCR answered %d after %d: the server's state is not the one this connection talked to", n, w.res.Counter)
	}
	w.res.Counter = n
	return nil
}

// Snapshot returns what the watch has seen so far.
func (w *RedisWatch) Snapshot() RedisWatchResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res
}

// Stop ends the watch, asks CLIENT ID again on the same connection, and returns the result; the
// error is the first failure the client saw.
func (w *RedisWatch) Stop() (RedisWatchResult, error) {
	close(w.stop)
	<-w.done
	defer w.rc.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.res.Error != "" {
		return w.res, errors.New(w.res.Error)
	}
	_ = w.rc.c.SetDeadline(time.Now().Add(time.Minute))
	id, err := w.rc.int("CLIENT", "ID")
	if err != nil {
		w.res.Error = err.Error()
		return w.res, fmt.Errorf("CLIENT ID at the end: %w", err)
	}
	w.res.Requests++
	w.res.ClientIDAfter = id
	w.res.SameConnection = id == w.res.ClientIDBefore
	if !w.res.SameConnection {
		return w.res, fmt.Errorf("CLIENT ID changed from %d to %d: not the same server-side connection", w.res.ClientIDBefore, id)
	}
	return w.res, nil
}
