package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
)

// serveSessions answers TCP sessions on addr: for each line a client sends, one line back,
// "SEQ PID LINE", SEQ counting the lines of this connection from 1. A client that keeps one
// connection across a migration sees its session's state (SEQ) and the process (PID, as the
// container sees it) carry on, or the connection break.
func serveSessions(addr string) error {
	// Plain TCP: Go listens with MPTCP by default where the kernel has it, and CRIU cannot
	// checkpoint MPTCP sockets ("Unsupported proto 262").
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				seq := 0
				for sc.Scan() {
					seq++
					if _, err := fmt.Fprintf(c, "%d %d %s\n", seq, os.Getpid(), sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return nil
}
