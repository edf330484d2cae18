package main

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestListensOnLoopbackUnlessHostWidensIt: by default the dev server answers
// on 127.0.0.1 and not on the machine's other addresses; HOST=0.0.0.0
// answers on them too.
func TestListensOnLoopbackUnlessHostWidensIt(t *testing.T) {
	other := nonLoopbackIP(t)
	for _, tc := range []struct {
		host       string
		fromOthers bool
	}{{"", false}, {"127.0.0.1", false}, {"0.0.0.0", true}} {
		ln, err := listen(tc.host, "0")
		if err != nil {
			t.Fatalf("HOST=%q: %v", tc.host, err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		if !reachable(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))) {
			t.Errorf("HOST=%q: not reachable on 127.0.0.1", tc.host)
		}
		if other != "" {
			if got := reachable(net.JoinHostPort(other, strconv.Itoa(port))); got != tc.fromOthers {
				t.Errorf("HOST=%q: reachable on %s = %v, want %v", tc.host, other, got, tc.fromOthers)
			}
		}
		ln.Close()
	}
	if other == "" {
		t.Log("no non-loopback address on this machine: checked loopback only")
	}
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
