package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
)

// FuzzClockAdvance: POST /dev/clock/advance with any body and Content-Type
// never answers 5xx: 200 with the new time, or 400/413 in the contract's
// error shape. No store is needed: nothing is scheduled and the stand-in
// holds no subscription. A longer run:
//
//	go test -run '^$' -fuzz '^FuzzClockAdvance$' -fuzztime 60s ./cmd/dev
func FuzzClockAdvance(f *testing.F) {
	cfg, err := config.Load(func(k string) string { return map[string]string{"MAX_BODY_BYTES": "4096"}[k] })
	if err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	d := &devServer{cfg: cfg, catalog: billing.DefaultCatalog(), log: log, mux: http.NewServeMux(), clock: clock.NewDev()}
	d.local = devtasks.New(d.clock, func(context.Context, billing.GrantTask) error { return nil }, log)
	stand := devstripe.New(devstripe.Config{PublicURL: "http://localhost:8000", WebhookSecret: "whsec_fuzz",
		Webhook: http.NotFoundHandler(), Catalog: d.catalog, Clock: d.clock})
	f.Cleanup(stand.Close)
	d.pay = stand
	d.srv = &functions.Server{Config: cfg, Catalog: d.catalog, Clock: d.clock, Log: log}
	h := d.srv.Wrap(http.HandlerFunc(d.advance))
	for _, b := range []string{`{"seconds":0}`, `{"seconds":3600}`, `{"seconds":-1}`, `{"seconds":1e3}`, `{"seconds":"60"}`,
		`{"seconds":315400000}`, `{"seconds":9223372036854775807}`, `{}`, ``, `null`, `[]`, `{"seconds":1}{"seconds":2}`,
		`{"seconds":1,"extra":true}`, "{\"seconds\":\xff}", `{"seconds":` + strings.Repeat("9", 5000) + `}`} {
		f.Add("application/json", []byte(b))
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req := httptest.NewRequest("POST", "/dev/clock/advance", bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || (rec.Code != 200 && rec.Code != 400 && rec.Code != 413) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body)
		}
		if e, ok := out["error"].(map[string]any); rec.Code != 200 && (!ok || e["code"] == "" || e["message"] == "") {
			t.Fatalf("status %d without the contract's error shape: %s", rec.Code, rec.Body)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("one advance took %v", time.Since(start))
		}
	})
}
