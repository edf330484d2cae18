package tasks_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
)

// brokenStore fails every call.
type brokenStore struct{}

func (brokenStore) UpdateAccount(context.Context, string, func(*billing.Account) error) (*billing.Account, error) {
	return nil, errors.New("firestore: rpc error: code = Unavailable desc = secret internals")
}

func post(h http.Handler, method, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, "/api/tasks/grant", strings.NewReader(body)))
	return w
}

func TestGrantHandlerRefusesMalformedTasks(t *testing.T) {
	sched := &mock.Scheduler{}
	h := tasks.NewGrantHandler(mock.NewStore(), sched, clock.NewFixed(time.Now()), billing.DefaultCatalog().Free(), nil)
	for _, body := range []string{
		``, `not json`, `[]`, `{"uid":"u"}{"uid":"u"}`, `{"uid":"u","period":1,"extra":true}`,
		`{"period":1}`, `{"uid":"","period":1}`, `{"uid":"u","period":-1}`, `{"uid":"u","period":"1"}`,
		`{"uid":"u","period":1.5}`,
	} {
		w := post(h, http.MethodPost, body)
		if w.Code != http.StatusBadRequest {
			t.Errorf("body %.40q: status %d, want 400", body, w.Code)
			continue
		}
		wantErrorBody(t, w, "bad_request")
	}
	// A body over the cap is refused as every route refuses one.
	if w := post(h, http.MethodPost, `{"uid":"`+strings.Repeat("x", 5000)+`","period":1}`); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", w.Code)
	} else {
		wantErrorBody(t, w, "payload_too_large")
	}
	if w := post(h, http.MethodGet, ""); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q; want 405 POST", w.Code, w.Header().Get("Allow"))
	}
	if len(sched.Tasks()) != 0 {
		t.Errorf("scheduled %v for malformed tasks", sched.Tasks())
	}
}

func TestGrantHandler(t *testing.T) {
	free := billing.DefaultCatalog().Free()
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		setup     func(s *mock.Store)
		body      string
		now       time.Time
		schedErr  error
		store     tasks.AccountUpdater
		want      int
		code      string
		scheduled []int64 // periods scheduled
		credits   int64   // balance of "u" after, -1 to skip
	}{
		{name: "due grant applied, next scheduled", body: `{"uid":"u","period":1}`, now: start.Add(billing.Week),
			want: 200, scheduled: []int64{2}, credits: 50},
		{name: "redelivered: nothing granted, next scheduled again", body: `{"uid":"u","period":0}`, now: start.Add(time.Hour),
			want: 200, scheduled: []int64{1}, credits: 50},
		{name: "late: the current week is granted", body: `{"uid":"u","period":1}`, now: start.Add(5*billing.Week + time.Hour),
			want: 200, scheduled: []int64{6}, credits: 50},
		{name: "early: retried", body: `{"uid":"u","period":1}`, now: start.Add(billing.Week - time.Hour),
			want: 503, code: "unavailable", scheduled: []int64{1}, credits: 50},
		{name: "unknown account: dropped", body: `{"uid":"nobody","period":1}`, now: start.Add(billing.Week),
			want: 200, credits: -1},
		{name: "paid plan: nothing granted, chain stops", body: `{"uid":"u","period":1}`, now: start.Add(billing.Week),
			setup: func(s *mock.Store) {
				_, _ = s.UpdateAccount(context.Background(), "u", func(a *billing.Account) error {
					a.SetPlan(billing.PlanBasic, start.Add(time.Hour))
					return nil
				})
			},
			want: 200, credits: 0},
		{name: "scheduler down: 500 so that Cloud Tasks retries", body: `{"uid":"u","period":1}`, now: start.Add(billing.Week),
			schedErr: errors.New("unavailable"), want: 500, code: "internal", scheduled: []int64{2}, credits: 50},
		{name: "store down: 500", body: `{"uid":"u","period":1}`, now: start.Add(billing.Week),
			store: brokenStore{}, want: 500, code: "internal", credits: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mock.NewStore()
			if _, _, err := s.Provision(t.Context(), billing.Identity{UID: "u"}, start); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(s)
			}
			var store tasks.AccountUpdater = s
			if tt.store != nil {
				store = tt.store
			}
			sched := &mock.Scheduler{ScheduleGrantFn: func(context.Context, billing.GrantTask) error { return tt.schedErr }}
			h := tasks.NewGrantHandler(store, sched, clock.NewFixed(tt.now), free, nil)
			w := post(h, http.MethodPost, tt.body)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if tt.code != "" {
				wantErrorBody(t, w, tt.code)
				if strings.Contains(w.Body.String(), "secret internals") {
					t.Errorf("the error body leaks the store's error: %s", w.Body)
				}
			}
			var periods []int64
			for _, st := range sched.Tasks() {
				periods = append(periods, st.Period)
			}
			if !equal(periods, tt.scheduled) {
				t.Errorf("scheduled periods %v, want %v", periods, tt.scheduled)
			}
			if tt.credits >= 0 {
				a, _ := s.Account(t.Context(), "u")
				if got := a.Balance(tt.now); got != tt.credits {
					t.Errorf("balance %d, want %d", got, tt.credits)
				}
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// pagedOverdue serves fixed pages, or fails.
type pagedOverdue struct {
	pages [][]billing.GrantTask
	err   error
	loop  bool // return the same cursor for ever
	calls int
}

func (p *pagedOverdue) Overdue(_ context.Context, _ time.Time, _ int, after string) ([]billing.GrantTask, string, error) {
	p.calls++
	if p.err != nil {
		return nil, "", p.err
	}
	if p.loop {
		return p.pages[0], "same", nil
	}
	i := 0
	if after != "" {
		i = int(after[0] - '0')
	}
	next := ""
	if i+1 < len(p.pages) {
		next = string(rune('0' + i + 1))
	}
	return p.pages[i], next, nil
}

func TestReconcileHandler(t *testing.T) {
	task := func(uid string) billing.GrantTask { return billing.GrantTask{UID: uid, Period: 3} }
	pages := [][]billing.GrantTask{{task("a"), task("b")}, {task("c")}, {task("d"), task("e")}}
	clock := clock.NewFixed(time.Now())

	t.Run("pages through all", func(t *testing.T) {
		sched := &mock.Scheduler{}
		h := tasks.NewReconcileHandler(&pagedOverdue{pages: pages}, sched, clock, nil)
		w := post(h, http.MethodPost, "")
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"scheduled":5}` {
			t.Fatalf("%d %s, want 200 {\"scheduled\":5}", w.Code, w.Body)
		}
		if len(sched.Tasks()) != 5 {
			t.Fatalf("scheduled %v", sched.Tasks())
		}
	})
	t.Run("a failed schedule does not stop the sweep", func(t *testing.T) {
		sched := &mock.Scheduler{ScheduleGrantFn: func(_ context.Context, t billing.GrantTask) error {
			if t.UID == "b" {
				return errors.New("unavailable")
			}
			return nil
		}}
		h := tasks.NewReconcileHandler(&pagedOverdue{pages: pages}, sched, clock, nil)
		w := post(h, http.MethodPost, "")
		if w.Code != 500 {
			t.Fatalf("status %d, want 500", w.Code)
		}
		wantErrorBody(t, w, "internal")
		var others int
		for _, task := range sched.Tasks() {
			if task.UID != "b" {
				others++
			}
		}
		if others != 4 {
			t.Fatalf("scheduled %d tasks, want the 4 others: %v", others, sched.Tasks())
		}
	})
	t.Run("store down", func(t *testing.T) {
		h := tasks.NewReconcileHandler(&pagedOverdue{err: errors.New("boom")}, &mock.Scheduler{}, clock, nil)
		if w := post(h, http.MethodPost, ""); w.Code != 500 {
			t.Fatalf("status %d, want 500", w.Code)
		}
	})
	t.Run("a cursor that does not move stops", func(t *testing.T) {
		o := &pagedOverdue{pages: pages, loop: true}
		h := tasks.NewReconcileHandler(o, &mock.Scheduler{}, clock, nil)
		if w := post(h, http.MethodPost, ""); w.Code != 500 || o.calls != 2 {
			t.Fatalf("status %d after %d pages, want 500 after 2", w.Code, o.calls)
		}
	})
	t.Run("asks for grants overdue by more than the grace", func(t *testing.T) {
		var before time.Time
		h := tasks.NewReconcileHandler(overdueFunc(func(b time.Time) { before = b }), &mock.Scheduler{}, clock, nil)
		post(h, http.MethodPost, "")
		if want := clock.Now().Add(-time.Hour); !before.Equal(want) {
			t.Fatalf("before = %s, want %s", before, want)
		}
	})
	t.Run("GET", func(t *testing.T) {
		h := tasks.NewReconcileHandler(&pagedOverdue{pages: pages}, &mock.Scheduler{}, clock, nil)
		if w := post(h, http.MethodGet, ""); w.Code != 405 {
			t.Fatalf("status %d, want 405", w.Code)
		}
	})
}

type overdueFunc func(before time.Time)

func (f overdueFunc) Overdue(_ context.Context, before time.Time, _ int, _ string) ([]billing.GrantTask, string, error) {
	f(before)
	return nil, "", nil
}
