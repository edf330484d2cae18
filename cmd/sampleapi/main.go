// Command sampleapi is a tiny real service to put behind the meter: `make
// dev` starts it and meters it at /v1/ when METER_UPSTREAMS is not set, so
// that the playground makes a real upstream call. It answers:
//
//	POST /stats          text statistics of the body: {"characters","words","lines","sentences","topWords"}
//	GET  /echo           what it received: method, path, query and headers (to see what Paymeter forwards)
//	GET  /bytes?n=N      N bytes (up to 64 MiB), streamed
//	GET  /status/{code}  answers that status
//	GET  /sleep?ms=N     answers after N milliseconds
//
// It listens on ADDR (default 127.0.0.1:9100; port 0 picks one) and prints
// "sampleapi listening on http://host:port".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:9100"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampleapi:", err)
		os.Exit(1)
	}
	fmt.Printf("sampleapi listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: routes(), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "sampleapi:", err)
		os.Exit(1)
	}
}

func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stats", stats)
	mux.HandleFunc("GET /echo", echo)
	mux.HandleFunc("GET /bytes", bytesOf)
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		write(w, code, map[string]any{"status": code})
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(min(max(ms, 0), 600_000)) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		write(w, http.StatusOK, map[string]any{"slept": ms})
	})
	return mux
}

func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func stats(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		write(w, http.StatusBadRequest, map[string]string{"error": "unreadable body"})
		return
	}
	text := string(body)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var in struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(body, &in) == nil {
			text = in.Text
		}
	}
	words := strings.FieldsFunc(strings.ToLower(text), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '\'' })
	counts := map[string]int{}
	for _, wd := range words {
		counts[wd]++
	}
	top := make([]string, 0, len(counts))
	for wd := range counts {
		top = append(top, wd)
	}
	sort.Slice(top, func(i, j int) bool {
		if counts[top[i]] != counts[top[j]] {
			return counts[top[i]] > counts[top[j]]
		}
		return top[i] < top[j]
	})
	if len(top) > 5 {
		top = top[:5]
	}
	sentences := strings.Count(text, ".") + strings.Count(text, "!") + strings.Count(text, "?")
	lines := 0
	if text != "" {
		lines = strings.Count(text, "\n") + 1
	}
	write(w, http.StatusOK, map[string]any{"characters": len([]rune(text)), "words": len(words), "lines": lines,
		"sentences": sentences, "topWords": top})
}

func echo(w http.ResponseWriter, r *http.Request) {
	write(w, http.StatusOK, map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "headers": r.Header})
}

func bytesOf(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > 64<<20 {
		write(w, http.StatusBadRequest, map[string]string{"error": "n is 0 to 67108864"})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	chunk := []byte(strings.Repeat("paymeter", 4096)) // 32 KiB
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}
