package devtasks_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
	"github.com/paymeter/paymeter/tasks"
)

var t0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

// deliveries records what a Queue delivered and the clock at each.
type deliveries struct {
	mu    sync.Mutex
	clock *clock.Dev
	got   []billing.GrantTask
	at    []time.Time
	fail  func(billing.GrantTask) error
}

func (d *deliveries) deliver(_ context.Context, t billing.GrantTask) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = append(d.at, d.clock.Now())
	if d.fail != nil {
		if err := d.fail(t); err != nil {
			return err
		}
	}
	d.got = append(d.got, t)
	return nil
}

func newQueue() (*devtasks.Queue, *clock.Dev, *deliveries) {
	clock := clock.NewDevAt(t0)
	d := &deliveries{clock: clock}
	return devtasks.New(clock, d.deliver, nil), clock, d
}

func schedule(t *testing.T, l *devtasks.Queue, uid string, period int64, at time.Time) {
	t.Helper()
	if err := l.ScheduleGrant(t.Context(), billing.GrantTask{UID: uid, Period: period, At: at}); err != nil {
		t.Fatal(err)
	}
}

func advance(t *testing.T, l *devtasks.Queue, d time.Duration) int {
	t.Helper()
	n, err := l.Advance(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQueueDeliversInTimeOrderAtEachTasksTime(t *testing.T) {
	l, clock, d := newQueue()
	schedule(t, l, "c", 1, t0.Add(3*time.Hour))
	schedule(t, l, "a", 1, t0.Add(time.Hour))
	schedule(t, l, "b", 1, t0.Add(2*time.Hour))
	schedule(t, l, "later", 1, t0.Add(48*time.Hour))
	if p := l.Pending(); len(p) != 4 || p[0].Task.UID != "a" || p[3].Task.UID != "later" {
		t.Fatalf("pending %+v, want 4, a first", p)
	}
	if n := advance(t, l, 24*time.Hour); n != 3 {
		t.Fatalf("delivered %d, want 3", n)
	}
	for i, uid := range []string{"a", "b", "c"} {
		if d.got[i].UID != uid {
			t.Fatalf("delivery %d: %s, want %s", i, d.got[i].UID, uid)
		}
		if lag := d.at[i].Sub(t0.Add(time.Duration(i+1) * time.Hour)); lag < 0 || lag > time.Second {
			t.Errorf("delivery %d at %s, want its scheduled time", i, d.at[i])
		}
	}
	if now := clock.Now(); now.Sub(t0.Add(24*time.Hour)).Abs() > time.Second {
		t.Errorf("clock %s after Advance(24h), want %s", now, t0.Add(24*time.Hour))
	}
	if l.Len() != 1 {
		t.Fatalf("pending %d, want 1", l.Len())
	}
}

func TestQueueDeduplicatesByName(t *testing.T) {
	l, clock, d := newQueue()
	for range 3 {
		schedule(t, l, "u", 1, t0.Add(time.Hour))
	}
	schedule(t, l, "u", 2, t0.Add(time.Hour))
	if l.Len() != 2 {
		t.Fatalf("pending %d, want 2 (one per period)", l.Len())
	}
	advance(t, l, 90*time.Minute)
	// The name of a task that ran stays taken for an hour.
	schedule(t, l, "u", 1, clock.Now())
	if n := advance(t, l, 0); n != 0 || l.Len() != 0 {
		t.Fatalf("a task that ran was accepted again within the hour: %d delivered, %d pending", n, l.Len())
	}
	clock.Advance(devtasks.Tombstone)
	schedule(t, l, "u", 1, clock.Now())
	if n := advance(t, l, 0); n != 1 {
		t.Fatalf("after the tombstone: %d delivered, want 1", n)
	}
	if len(d.got) != 3 {
		t.Fatalf("deliveries %v", d.got)
	}
}

func TestQueueRetriesWithBackoffNeverDrops(t *testing.T) {
	l, _, d := newQueue()
	failures := 0
	d.fail = func(billing.GrantTask) error {
		if failures < 20 {
			failures++
			return errors.New("handler down")
		}
		return nil
	}
	schedule(t, l, "u", 1, t0.Add(time.Minute))
	if n := advance(t, l, 2*time.Minute); n != 0 {
		t.Fatalf("delivered %d while failing", n)
	}
	p := l.Pending()
	if len(p) != 1 || p[0].Attempts == 0 {
		t.Fatalf("pending %+v, want the task, with attempts", p)
	}
	if n := advance(t, l, 30*24*time.Hour); n != 1 {
		t.Fatalf("delivered %d, want 1 once the handler recovered", n)
	}
	if l.Len() != 0 || len(d.at) != 21 {
		t.Fatalf("pending %d, attempts %d; want 0 and 21", l.Len(), len(d.at))
	}
	// The gaps double from 100ms and stop at an hour.
	for i, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 20: time.Hour} {
		if gap := d.at[i].Sub(d.at[i-1]); gap < want || gap > want+time.Second {
			t.Errorf("retry %d after %s, want %s", i, gap, want)
		}
	}
}

func TestQueueOverdueTaskRunsOnNextAdvance(t *testing.T) {
	l, _, d := newQueue()
	schedule(t, l, "u", 1, t0.Add(-48*time.Hour))
	if len(d.got) != 0 {
		t.Fatal("delivered on schedule, want on the next Advance")
	}
	if n := advance(t, l, 0); n != 1 {
		t.Fatalf("Advance(0) delivered %d, want 1", n)
	}
}

func TestQueueDelete(t *testing.T) {
	l, _, d := newQueue()
	schedule(t, l, "u", 1, t0.Add(time.Hour))
	if !l.Delete("u", 1) || l.Delete("u", 1) {
		t.Fatal("Delete: want true, then false")
	}
	schedule(t, l, "u", 1, t0.Add(time.Hour)) // within the tombstone: dropped
	advance(t, l, 2*time.Hour)
	if len(d.got) != 0 {
		t.Fatalf("delivered %v after delete", d.got)
	}
}

func TestQueueRunDeliversDueTasksInTheBackground(t *testing.T) {
	l, _, d := newQueue()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- l.Run(ctx, 5*time.Millisecond) }()
	schedule(t, l, "u", 1, t0)
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.got) != 1 {
		t.Fatalf("background loop delivered %d, want 1", len(d.got))
	}
}

func TestQueueAdvanceStopsWithContext(t *testing.T) {
	l, _, _ := newQueue()
	schedule(t, l, "u", 1, t0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Advance(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Advance: %v, want context.Canceled", err)
	}
}

func TestDeliverHTTP(t *testing.T) {
	var gotSecret, gotBody string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSecret = r.Header.Get(tasks.SecretHeader)
		b := make([]byte, 100)
		n, _ := r.Body.Read(b)
		gotBody = string(b[:n])
		if gotBody == `{"uid":"bad","period":1}` {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	})
	deliver := devtasks.DeliverHTTP(h, "s")
	if err := deliver(t.Context(), billing.GrantTask{UID: "u", Period: 1, At: t0}); err != nil {
		t.Fatal(err)
	}
	if gotSecret != "s" || gotBody != `{"uid":"u","period":1}` {
		t.Fatalf("secret %q, body %q", gotSecret, gotBody)
	}
	if err := deliver(t.Context(), billing.GrantTask{UID: "bad", Period: 1}); err == nil {
		t.Fatal("a 503 was not an error")
	}
}
