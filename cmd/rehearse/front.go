package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// service is one deployed function: a Cloud Run service of the function's
// name, running the built binary with FUNCTION_TARGET set to its entry point.
type service struct {
	Name    string // the function (and Cloud Run service) name, as in terraform/functions.tf
	Entry   string // its entry point
	Public  bool   // roles/run.invoker for allUsers; else only the task caller
	Account string // the runtime service account

	port     int
	host     string // the deterministic run.app host
	pid      int
	started  time.Time
	ready    time.Duration // process start to its first answer
	first200 atomic.Int64  // process start to the first 200 the front passed on, ns
	requests atomic.Int64
}

func (s *service) url() string { return "https://" + s.host }

// front behaves as Google's edge does for the rehearsal: Firebase Hosting on
// the site origin, Cloud Run's invoker check on each function's run.app host,
// Google's APIs that the functions call (through HTTPS_PROXY), and each
// function's metadata server.
type front struct {
	auth     *authority
	project  string
	number   string
	region   string
	services []*service
	webDir   string
	rewrites []rewrite
	headers  []headerRule

	stripeMock string // http://host:port of stripe-mock
	tasksGRPC  string // host:port of the Cloud Tasks emulator
	// The Cloud Tasks emulator signs its OIDC tokens with its own key and
	// issuer: it stands in for Google's token service here.
	tasksIssuer string
	tasksKeys   keySet

	tlsConns chan net.Conn

	mu         sync.Mutex
	unexpected []string // outbound calls that no stand-in answers: what the deploy would reach
	log        io.Writer
}

type rewrite struct {
	Source      string
	Function    string
	Destination string
}

type headerRule struct {
	Source  string
	Headers map[string]string
}

// readFirebaseJSON loads hosting's rewrites and headers from firebase.json.
func readFirebaseJSON(path string) (rewrites []rewrite, headers []headerRule, region string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", err
	}
	var doc struct {
		Hosting struct {
			Rewrites []struct {
				Source      string `json:"source"`
				Destination string `json:"destination"`
				Function    *struct {
					FunctionID string `json:"functionId"`
					Region     string `json:"region"`
				} `json:"function"`
			} `json:"rewrites"`
			Headers []struct {
				Source  string `json:"source"`
				Headers []struct{ Key, Value string }
			} `json:"headers"`
		} `json:"hosting"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", path, err)
	}
	for _, r := range doc.Hosting.Rewrites {
		rw := rewrite{Source: r.Source, Destination: r.Destination}
		if r.Function != nil {
			rw.Function = r.Function.FunctionID
			region = r.Function.Region
		}
		rewrites = append(rewrites, rw)
	}
	for _, h := range doc.Hosting.Headers {
		hr := headerRule{Source: h.Source, Headers: map[string]string{}}
		for _, kv := range h.Headers {
			hr.Headers[kv.Key] = kv.Value
		}
		headers = append(headers, hr)
	}
	return rewrites, headers, region, nil
}

// globMatch matches Hosting's source globs as firebase.json uses them: an
// exact path, "/prefix/**", or "**".
func globMatch(glob, path string) bool {
	switch {
	case glob == "**":
		return true
	case strings.HasSuffix(glob, "/**"):
		prefix := strings.TrimSuffix(glob, "**")
		return strings.HasPrefix(path, prefix) && len(path) > len(prefix)
	default:
		return glob == path
	}
}

func (f *front) note(format string, args ...any) {
	fmt.Fprintf(f.log, "front: "+format+"\n", args...)
}

func (f *front) unexpectedCall(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.unexpected, what) {
		f.unexpected = append(f.unexpected, what)
		f.note("UNEXPECTED outbound call: %s", what)
	}
}

func (f *front) byName(name string) *service {
	for _, s := range f.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ---------- Firebase Hosting ----------

// hosting serves web/dist and applies firebase.json's rewrites, in Hosting's
// order: an existing static file first, then the first rewrite that matches.
func (f *front) hosting() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hosting passes only the __session cookie on to functions.
		if c, err := r.Cookie("__session"); err == nil {
			r.Header.Set("Cookie", c.String())
		} else {
			r.Header.Del("Cookie")
		}
		if f.serveStatic(w, r, r.URL.Path) {
			return
		}
		for _, rw := range f.rewrites {
			if !globMatch(rw.Source, r.URL.Path) {
				continue
			}
			if rw.Function != "" {
				s := f.byName(rw.Function)
				if s == nil {
					http.Error(w, "Hosting: no function "+rw.Function, http.StatusNotFound)
					return
				}
				// Hosting calls the function's service without an identity
				// of its own: only a public function answers.
				f.cloudRun(s).ServeHTTP(w, r)
				return
			}
			if f.serveStatic(w, r, rw.Destination) {
				return
			}
		}
		http.NotFound(w, r)
	})
}

func (f *front) serveStatic(w http.ResponseWriter, r *http.Request, path string) bool {
	if f.webDir == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	p := filepath.Join(f.webDir, filepath.FromSlash(filepath.Clean("/"+path)))
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return false
	}
	for _, h := range f.headers {
		if globMatch(h.Source, r.URL.Path) {
			for k, v := range h.Headers {
				w.Header().Set(k, v)
			}
		}
	}
	http.ServeFile(w, r, p)
	return true
}

// ---------- Cloud Run ----------

// cloudRun is s's service as Cloud Run fronts it: a private service admits
// only a valid Google ID token for its URL whose account holds
// roles/run.invoker, and passes the request on with that token's signature
// replaced by SIGNATURE_REMOVED_BY_GOOGLE.
func (f *front) cloudRun(s *service) http.Handler {
	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", s.port))
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(res *http.Response) error {
		if res.StatusCode == http.StatusOK {
			s.first200.CompareAndSwap(0, int64(time.Since(s.started)))
		}
		return nil
	}
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		f.note("%s: %v", s.Name, err)
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if !s.Public {
			token, err := f.admit(s, r)
			if err != nil {
				code := http.StatusUnauthorized
				if e, ok := err.(refusal); ok {
					code = e.code
				}
				f.note("%s refused %s %s: %d %v", s.Name, r.Method, r.URL.Path, code, err)
				http.Error(w, http.StatusText(code), code)
				return
			}
			r.Header.Set("Authorization", "Bearer "+token)
		}
		r.Header.Set("X-Cloud-Trace-Context", fmt.Sprintf("%032x/1;o=1", time.Now().UnixNano()))
		proxy.ServeHTTP(w, r)
	})
}

type refusal struct {
	code int
	msg  string
}

func (e refusal) Error() string { return e.msg }

// admit is Cloud Run's invoker check of a private service. It returns the
// token to pass on (signature removed).
func (f *front) admit(s *service, r *http.Request) (string, error) {
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", refusal{http.StatusForbidden, "no identity token"}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", refusal{http.StatusUnauthorized, "not a JWT"}
	}
	var peek struct {
		Iss string `json:"iss"`
	}
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(pb, &peek)
	keys := keySet{f.auth.kid: &f.auth.idKey.PublicKey}
	if peek.Iss == f.tasksIssuer && f.tasksKeys != nil {
		keys = f.tasksKeys
	} else if peek.Iss != googleIssuer {
		return "", refusal{http.StatusUnauthorized, "issuer " + peek.Iss}
	}
	claims, err := verifyRS256(token, keys)
	if err != nil {
		return "", refusal{http.StatusUnauthorized, err.Error()}
	}
	exp, _ := claims["exp"].(float64)
	if time.Now().Unix() >= int64(exp) {
		return "", refusal{http.StatusUnauthorized, "expired"}
	}
	aud, _ := claims["aud"].(string)
	legacy := fmt.Sprintf("https://%s-%s.cloudfunctions.net/%s", f.region, f.project, s.Name)
	if aud != s.url() && aud != s.url()+"/" && aud != legacy {
		return "", refusal{http.StatusUnauthorized, "audience " + aud}
	}
	email, _ := claims["email"].(string)
	if ok, _ := claims["email_verified"].(bool); !ok || email != f.tasksAccount() {
		return "", refusal{http.StatusForbidden, email + " lacks roles/run.invoker"}
	}
	if peek.Iss == f.tasksIssuer {
		// The emulator cannot sign as Google; the token it stands in for
		// is Google's.
		claims["iss"] = googleIssuer
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	return stripSignature(header, claims), nil
}

func (f *front) tasksAccount() string {
	return "paymeter-tasks@" + f.project + ".iam.gserviceaccount.com"
}

// ---------- Google's APIs, through HTTPS_PROXY ----------

// proxy answers HTTP CONNECT for the hosts the functions and the Cloud
// Tasks emulator reach, with certificates of the rehearsal's CA. Any other
// host is refused and recorded.
func (f *front) proxy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			f.unexpectedCall("plain HTTP through the proxy: " + r.URL.String())
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		grpc := host == "cloudtasks.googleapis.com"
		if !grpc && !f.httpsHost(host) {
			f.unexpectedCall("CONNECT " + r.Host)
			http.Error(w, "not reachable in the rehearsal", http.StatusForbidden)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if buf.Reader.Buffered() > 0 {
			conn.Close()
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return f.auth.certFor(host) }}
		if !grpc {
			cfg.NextProtos = []string{"http/1.1"}
			f.tlsConns <- tls.Server(conn, cfg)
			return
		}
		// gRPC: terminate TLS (h2) and pass the HTTP/2 stream to the
		// emulator, which speaks it in clear.
		cfg.NextProtos = []string{"h2"}
		tc := tls.Server(conn, cfg)
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return
		}
		up, err := net.Dial("tcp", f.tasksGRPC)
		if err != nil {
			tc.Close()
			return
		}
		go func() { _, _ = io.Copy(up, tc); up.Close() }()
		_, _ = io.Copy(tc, up)
		tc.Close()
	})
}

func (f *front) httpsHost(host string) bool {
	if host == "api.stripe.com" || host == "www.googleapis.com" {
		return true
	}
	for _, s := range f.services {
		if host == s.host {
			return true
		}
	}
	return false
}

// https serves the requests that came through CONNECT, by host.
func (f *front) https() http.Handler {
	stripeURL, _ := url.Parse(f.stripeMock)
	stripe := httputil.NewSingleHostReverseProxy(stripeURL)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		switch host {
		case "api.stripe.com":
			r.Host = stripeURL.Host
			stripe.ServeHTTP(w, r)
			return
		case "www.googleapis.com":
			if r.URL.Path == "/oauth2/v3/certs" {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(f.auth.jwks())
				return
			}
		}
		for _, s := range f.services {
			if host == s.host {
				f.cloudRun(s).ServeHTTP(w, r)
				return
			}
		}
		f.unexpectedCall("https://" + r.Host + r.URL.Path)
		http.NotFound(w, r)
	})
}

// chanListener is a net.Listener of the connections the proxy hands over.
type chanListener struct {
	conns chan net.Conn
	addr  net.Addr
}

func (l chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.addr }

// ---------- the metadata server ----------

// metadata is the metadata server of s's instances (GCE_METADATA_HOST):
// project, region, and tokens of s's service account.
func (f *front) metadata(s *service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Metadata-Flavor", "Google")
		if r.URL.Path == "/" {
			return
		}
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		sa := "/computeMetadata/v1/instance/service-accounts/default/"
		switch r.URL.Path {
		case "/computeMetadata/v1/project/project-id":
			fmt.Fprint(w, f.project)
		case "/computeMetadata/v1/project/numeric-project-id":
			fmt.Fprint(w, f.number)
		case "/computeMetadata/v1/instance/region":
			fmt.Fprintf(w, "projects/%s/regions/%s", f.number, f.region)
		case "/computeMetadata/v1/instance/zone":
			fmt.Fprintf(w, "projects/%s/zones/%s-1", f.number, f.region)
		case "/computeMetadata/v1/instance/id":
			fmt.Fprintf(w, "%d", s.port)
		case "/computeMetadata/v1/universe/universe-domain":
			fmt.Fprint(w, "googleapis.com")
		case sa + "email":
			fmt.Fprint(w, s.Account)
		case sa + "scopes":
			fmt.Fprint(w, "https://www.googleapis.com/auth/cloud-platform")
		case sa:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"email": s.Account, "aliases": []string{"default"},
				"scopes": []string{"https://www.googleapis.com/auth/cloud-platform"}})
		case sa + "token":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "rehearsal-" + s.Name, "expires_in": 3599, "token_type": "Bearer"})
		case sa + "identity":
			fmt.Fprint(w, f.auth.googleToken(s.Account, r.URL.Query().Get("audience")))
		default:
			f.note("metadata %s: no answer for %s", s.Name, r.URL.Path)
			http.NotFound(w, r)
		}
	})
}
