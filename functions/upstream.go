package functions

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// Upstreams (METER_UPSTREAMS): a call under a prefix is metered like
// /api/meter, then forwarded to the operator's service by a
// httputil.ReverseProxy, streaming its answer back with the receipt headers.
//
// Refunds, exactly once per call (store.Refund records the request id):
// the credits are given back when the upstream answers 5xx (502
// upstream_error), cannot be reached (502), does not answer within
// METER_UPSTREAM_TIMEOUT (504 upstream_timeout), when the consumer goes away
// before the upstream's answer began, and, with METER_CHARGE_ON=2xx, when
// it answers anything but 2xx (passed through). Once the answer's status and
// headers are on their way to the consumer the call is charged, whatever
// happens to its body.
//
// In lease mode a call without an Idempotency-Key is only admitted into the
// lease before it is forwarded: the upstream works on it while its use is
// recorded (one journal write, lease/flush.go), and its answer, or its
// failure, is held until the record has landed. A call whose use could not
// be recorded is answered 503 unavailable whatever the upstream answered,
// and charged nothing (nor refunded: nothing was recorded). The added
// latency is then the longer of the record and the upstream's work, not
// their sum. A call with an Idempotency-Key keeps the sequential path: its
// debit is the store's transaction that also holds its pending answer, so
// there is no lease admission to overlap.

// maxStoredAnswer is the most of an upstream's answer body kept for an
// idempotent replay; a longer answer is replayed as its status and headers.
const maxStoredAnswer = 256 << 10

// upstream is one metered prefix and its proxy.
type upstream struct {
	config.Upstream
	proxy *httputil.ReverseProxy
}

// upstreamFor returns the upstream whose prefix is the longest that path
// falls under, or nil. A prefix without a trailing slash matches itself and
// what lies below it ("/v2/translate", "/v2/translate/x").
func (s *Server) upstreamFor(path string) *upstream {
	var best *upstream
	for _, u := range s.upstreams {
		p := u.Prefix
		under := strings.HasPrefix(path, p) && (strings.HasSuffix(p, "/") || len(path) == len(p) || path[len(p)] == '/')
		if under && (best == nil || len(p) > len(best.Prefix)) {
			best = u
		}
	}
	return best
}

// buildUpstreams makes a proxy per configured upstream, sharing one
// transport. Functions calls it once.
func (s *Server) buildUpstreams() {
	if len(s.Config.Upstreams) == 0 || s.upstreams != nil {
		return
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 256
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	for _, cfg := range s.Config.Upstreams {
		u := &upstream{Upstream: cfg}
		u.proxy = &httputil.ReverseProxy{
			Rewrite:        func(pr *httputil.ProxyRequest) { s.rewrite(pr, u) },
			Transport:      tr,
			ModifyResponse: s.answered,
			ErrorHandler:   s.upstreamFailed,
			ErrorLog:       nil,
		}
		s.upstreams = append(s.upstreams, u)
	}
}

// proxyCall is one forwarded call's state, carried in its context.
type proxyCall struct {
	up        *upstream
	charge    billing.Debited
	pending   *lease.Pending // the record of its use in flight (lease mode); nil if recorded before forwarding
	record    sync.Once
	recordErr error
	body      []byte
	idem      string // its stored answer's id, "" if not idempotent
	requestID string
	token     string // a Google ID token for the upstream, production only
	timer     *time.Timer
	timedOut  atomic.Bool
	refunded  atomic.Bool
	balance   atomic.Int64 // after a refund
	s         *Server
	ctx       context.Context // for the store: outlives the consumer
}

type proxyCallKey struct{}

func callOf(ctx context.Context) *proxyCall { return ctx.Value(proxyCallKey{}).(*proxyCall) }

// forward meters the call and forwards it to up.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, up *upstream) {
	key, ok := headerKey(r)
	if !ok {
		s.Fail(w, r, billing.Errorf(billing.CodeInvalidAPIKey, "pass an API key as Authorization: Bearer <key> or X-API-Key: <key>"))
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	// The whole body is read, within the cap, before anything is debited.
	if r.ContentLength > s.Config.MaxBodyBytes {
		s.Fail(w, r, billing.Errorf(billing.CodeTooLarge, "the request body is over %d bytes", s.Config.MaxBodyBytes))
		return
	}
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.Fail(w, r, billing.Errorf(billing.CodeTooLarge, "the request body is over %d bytes", tooBig.Limit))
		return
	}
	if err != nil {
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, "the request body could not be read"))
		return
	}
	if !billing.WellFormedKey(key) {
		s.Fail(w, r, billing.ErrInvalidAPIKey)
		return
	}
	cost := int64(1)
	if c, ok := s.Config.MeterCosts[up.Prefix]; ok {
		cost = c
	}
	var d billing.Debited
	var pending *lease.Pending
	var idemID string
	if idem != "" {
		idemID = store.IdempotencyID(billing.HashKey(key), idem)
	}
	for attempt := 0; ; attempt++ {
		var replay *billing.Answer
		if idem == "" { // in lease mode admitted only: the upstream's work overlaps the record (proxyCall.recorded)
			d, pending, err = s.admitCharge(r, key, cost, up.Prefix, r.URL.Path)
		} else {
			d, replay, err = s.charge(r, key, idem, cost, up.Prefix, r.URL.Path, nil)
		}
		if err != nil {
			s.Fail(w, r, err)
			return
		}
		if replay == nil {
			break
		}
		if replay.Pending {
			if replay, err = s.awaitAnswer(r.Context(), idemID); err != nil {
				s.Fail(w, r, err)
				return
			}
		}
		if replay != nil {
			s.replay(w, replay)
			return
		}
		if attempt == 2 { // refunded twice meanwhile
			s.Fail(w, r, billing.Errorf(billing.CodeIdempotencyConflict, "a request with this Idempotency-Key is still in progress"))
			return
		}
	}
	c := &proxyCall{up: up, charge: d, pending: pending, body: body, idem: idemID, requestID: requestID(r.Context()), s: s,
		ctx: context.WithoutCancel(r.Context())}
	if s.UpstreamToken != nil {
		tok, err := s.UpstreamToken(r.Context(), audience(up.Upstream))
		if err != nil {
			if rerr := c.recorded(); rerr != nil {
				s.Fail(w, r, rerr)
				return
			}
			c.refund("no token for the upstream")
			s.Fail(w, r, billing.Errorf(billing.CodeUpstreamError, "the upstream could not be reached"))
			s.Log.ErrorContext(r.Context(), "upstream token", "prefix", up.Prefix, "err", err, "requestId", c.requestID)
			return
		}
		c.token = tok
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), proxyCallKey{}, c))
	defer cancel()
	c.timer = time.AfterFunc(s.Config.UpstreamTimeout, func() {
		c.timedOut.Store(true)
		cancel()
	})
	defer c.timer.Stop()
	up.proxy.ServeHTTP(recordGate{ResponseWriter: w, c: c}, r.WithContext(ctx))
}

// recorded waits for the record of the call's use, if it was still in
// flight, and returns nil once it landed, or a CodeUnavailable error if it
// could not be made: the call is then charged nothing and answered 503,
// whatever the upstream answered. It waits past the consumer's leaving (the
// record's own deadline bounds it): a refund must know whether there is a
// charge to give back.
func (c *proxyCall) recorded() error {
	if c.pending == nil {
		return nil
	}
	c.record.Do(func() { c.recordErr = c.pending.Wait(c.ctx) })
	return c.recordErr
}

// recordGate holds an upstream's informational (1xx) answers, which
// ReverseProxy passes on as they arrive, before ModifyResponse, until the
// call's use is recorded, and drops them if it was not.
type recordGate struct {
	http.ResponseWriter
	c *proxyCall
}

func (g recordGate) WriteHeader(code int) {
	if code < 200 && g.c.recorded() != nil {
		return
	}
	g.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the consumer's connection.
func (g recordGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// consumerHeaders are never forwarded: the consumer's secrets and the
// headers that only Paymeter sets.
var consumerHeaders = []string{"Authorization", "X-Api-Key", "Cookie", "X-Paymeter-Account", "X-Paymeter-Key-Id", "X-Request-Id"}

// rewrite makes the upstream request: the path after the prefix appended to
// the upstream URL's path, the query, the body read before the debit; the
// request headers less hop-by-hop ones (ReverseProxy removes those) and
// consumerHeaders; plus the account, key id and request id, and in
// production a Google ID token for the upstream.
func (s *Server) rewrite(pr *httputil.ProxyRequest, u *upstream) {
	c := callOf(pr.In.Context())
	rest := strings.TrimPrefix(pr.In.URL.Path, strings.TrimSuffix(u.Prefix, "/"))
	pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
	pr.SetURL(u.URL)
	pr.SetXForwarded()
	for _, h := range consumerHeaders {
		pr.Out.Header.Del(h)
	}
	pr.Out.Header.Set("X-Paymeter-Account", c.charge.UID)
	pr.Out.Header.Set("X-Paymeter-Key-Id", c.charge.KeyID)
	pr.Out.Header.Set("X-Request-Id", c.requestID)
	if c.token != "" {
		pr.Out.Header.Set("Authorization", "Bearer "+c.token)
	}
	pr.Out.Body = io.NopCloser(bytes.NewReader(c.body))
	pr.Out.ContentLength = int64(len(c.body))
	pr.Out.GetBody = nil
	if len(c.body) == 0 {
		pr.Out.Body = http.NoBody
	}
}

var errUpstream5xx = errors.New("upstream answered 5xx")
var errUpstreamTimeout = errors.New("upstream timed out")

// answered runs when the upstream's status and headers arrive, before any
// of it goes to the consumer: it holds them until the call's use is
// recorded.
func (s *Server) answered(res *http.Response) error {
	c := callOf(res.Request.Context())
	if !c.timer.Stop() {
		return errUpstreamTimeout // the timer fired as the answer arrived
	}
	if err := c.recorded(); err != nil {
		return err // upstreamFailed answers 503
	}
	if err := res.Request.Context().Err(); err != nil {
		return err // the consumer left while the answer was held: nothing was sent, the credits go back
	}
	if res.StatusCode >= 500 {
		return errUpstream5xx
	}
	h := res.Header
	for _, k := range []string{"X-Credits-Cost", "X-Credits-Remaining", "Idempotent-Replayed", "Idempotent-Body-Omitted"} {
		h.Del(k)
	}
	h.Set("X-Request-Id", c.requestID)
	cost, remaining := c.charge.Cost, c.charge.Remaining
	if s.Config.ChargeOn == "2xx" && (res.StatusCode < 200 || res.StatusCode > 299) {
		c.refund("upstream answered " + res.Status)
		cost, remaining = 0, c.balance.Load()
	}
	h.Set("X-Credits-Cost", itoa(cost))
	h.Set("X-Credits-Remaining", itoa(remaining))
	if c.idem != "" && !c.refunded.Load() {
		res.Body = &answerTee{ReadCloser: res.Body, c: c, status: res.StatusCode, header: h.Clone()}
	}
	return nil
}

// upstreamFailed answers a call whose upstream answered 5xx, could not be
// reached or timed out, or whose consumer went away first: nothing of the
// upstream's answer was sent, so the credits go back, once their use is
// recorded. A call whose use could not be recorded is answered 503 and has
// nothing to give back.
func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	c := callOf(r.Context())
	c.timer.Stop()
	if rerr := c.recorded(); rerr != nil {
		s.Log.WarnContext(r.Context(), "use not recorded: answered 503, upstream's answer discarded", "prefix", c.up.Prefix, "err", err,
			"requestId", c.requestID)
		s.Fail(w, r, rerr)
		return
	}
	var answer error
	reason := "upstream unreachable"
	switch {
	case c.timedOut.Load() || errors.Is(err, errUpstreamTimeout):
		reason, answer = "upstream timed out", billing.Errorf(billing.CodeUpstreamTimeout, "the upstream did not answer within %s", s.Config.UpstreamTimeout)
	case errors.Is(err, errUpstream5xx):
		reason, answer = "upstream answered 5xx", billing.Errorf(billing.CodeUpstreamError, "the upstream failed; no credits were charged")
	case context.Cause(r.Context()) != nil && errors.Is(err, context.Canceled):
		reason = "consumer went away"
	default:
		answer = billing.Errorf(billing.CodeUpstreamError, "the upstream could not be reached; no credits were charged")
	}
	c.refund(reason)
	s.Log.WarnContext(r.Context(), "upstream failed", "prefix", c.up.Prefix, "reason", reason, "err", err, "requestId", c.requestID)
	if answer == nil {
		return // nobody to answer
	}
	w.Header().Set("X-Credits-Cost", "0")
	w.Header().Set("X-Credits-Remaining", itoa(c.balance.Load()))
	s.Fail(w, r, answer)
}

// refund gives the call's credits back, once per call (the store also
// records it, so no retry refunds twice), once their use is recorded; a
// call whose use was not recorded was not charged and gets nothing back.
func (c *proxyCall) refund(reason string) {
	if c.recorded() != nil || c.refunded.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	balance, err := c.s.Metering.Refund(ctx, store.RefundRequest{Charge: c.charge, RequestID: c.requestID, Idem: c.idem,
		Now: c.s.Clock.Now()})
	if err != nil {
		c.s.Log.ErrorContext(ctx, "refund failed", "uid", c.charge.UID, "credits", c.charge.Cost, "reason", reason,
			"requestId", c.requestID, "err", err)
		balance = c.charge.Remaining
	}
	c.balance.Store(balance)
}

// answerTee keeps the first maxStoredAnswer bytes of an idempotent call's
// answer as they stream and stores the answer when the body ends.
type answerTee struct {
	io.ReadCloser
	c      *proxyCall
	status int
	header http.Header
	buf    []byte
	over   bool
	once   sync.Once
	done   bool
}

func (t *answerTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if !t.over {
		if len(t.buf)+n > maxStoredAnswer {
			t.over, t.buf = true, nil
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		t.done = true
	}
	return n, err
}

func (t *answerTee) Close() error {
	t.once.Do(func() {
		hdr := map[string]string{}
		for _, k := range []string{"Content-Type", "X-Credits-Cost", "X-Credits-Remaining"} {
			if v := t.header.Get(k); v != "" {
				hdr[k] = v
			}
		}
		ans := billing.Answer{Status: t.status, Header: hdr, Body: t.buf, BodyOmitted: t.over || !t.done}
		if ans.BodyOmitted {
			ans.Body = nil
		}
		ctx, cancel := context.WithTimeout(t.c.ctx, 10*time.Second)
		defer cancel()
		if err := t.c.s.Metering.SaveAnswer(ctx, t.c.idem, ans); err != nil {
			t.c.s.Log.ErrorContext(ctx, "save idempotent answer", "requestId", t.c.requestID, "err", err)
		}
	})
	return t.ReadCloser.Close()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// audience is the ID token audience of an upstream: its service URL,
// without a path (Cloud Run checks the scheme and host).
func audience(u config.Upstream) string { return u.URL.Scheme + "://" + u.URL.Host }
