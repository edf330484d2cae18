package functions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// methods maps HTTP methods to the handler of one path.
type methods map[string]http.HandlerFunc

// router is a path table on the standard mux whose unknown routes and wrong
// methods answer in the contract's error shape.
type router struct {
	s     *Server
	mux   *http.ServeMux
	paths []string
}

func newRouter(s *Server) *router {
	rt := &router{s: s, mux: http.NewServeMux()}
	rt.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.Fail(w, r, errNoRoute) })
	return rt
}

func (rt *router) handle(path string, m methods) {
	rt.paths = append(rt.paths, path)
	rt.mux.HandleFunc(path, rt.s.dispatch(m))
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

func (s *Server) dispatch(m methods) http.HandlerFunc {
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	return func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = m[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.Fail(w, r, billing.Errorf(billing.CodeMethodNotAllowed, "use %s", strings.Join(allowed, " or ")))
			return
		}
		h(w, r)
	}
}

// onlyMethod serves h for one method on any path.
func onlyMethod(method string, h http.HandlerFunc) http.Handler {
	return methodOnly{method, h}
}

type methodOnly struct {
	method string
	h      http.HandlerFunc
}

func (m methodOnly) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != m.method {
		w.Header().Set("Allow", m.method)
		httpjson.Fail(w, r, nil, billing.Errorf(billing.CodeMethodNotAllowed, "use %s", m.method))
		return
	}
	m.h(w, r)
}

// Wrap adds what every entry point shares: panic recovery, a request log
// line, CORS for the configured origins and the request body cap.
func (s *Server) Wrap(h http.Handler) http.Handler { return s.wrap(h) }

func (s *Server) wrap(h http.Handler) http.Handler { return s.wrapLimit(h, s.Config.MaxBodyBytes) }

// webhookBodyBytes caps Stripe's event bodies: an invoice with many lines is
// larger than any request of ours.
const webhookBodyBytes = 1 << 20

// wrapLimit is wrap with a body cap of its own.
func (s *Server) wrapLimit(h http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		id := newRequestID()
		rec.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				s.Fail(rec, r, fmt.Errorf("panic: %v", p))
			}
			s.Log.InfoContext(r.Context(), "request", "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "ms", time.Since(start).Milliseconds(), "requestId", id)
			if p == http.ErrAbortHandler {
				panic(p) // an answer broken off mid-stream: the server drops the connection
			}
		}()
		if !s.cors(rec, r) {
			return
		}
		r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
		h.ServeHTTP(rec, r)
	})
}

// cors sets the CORS headers for an allowed origin and answers preflight
// requests. It reports whether the request still needs handling.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed := origin != "" && slices.Contains(s.Config.CORSOrigins, origin)
	if allowed {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "X-Credits-Remaining, X-Credits-Cost, X-Request-Id, Idempotent-Replayed")
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return true
	}
	if allowed {
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-API-Key, Idempotency-Key")
		h.Set("Access-Control-Max-Age", "3600")
	}
	w.WriteHeader(http.StatusNoContent)
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController flush a streamed answer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type requestIDKey struct{}

// requestID is the id wrap gave the request: its X-Request-Id and the
// requestId of its log line.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// newRequestID returns "req_" and 16 random bytes in hex.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "req_" + hex.EncodeToString(b)
}
