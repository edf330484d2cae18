package tasks_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"sync"
	"testing"
	"time"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/tasks"
)

// unavailable skips the test, or fails it under CI=true, where the emulator
// must run.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	emulator.Unavailable(t, "cloud tasks emulator", fmt.Errorf(format, args...))
}

// syncBuffer is a bytes.Buffer safe for the emulator's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEmulator runs the emulator on free ports until the test ends. It
// returns its gRPC address and the URL of its token-signing keys.
func startEmulator(t *testing.T) (addr, jwksURL string) {
	t.Helper()
	bin := emulator.BuildTool(t, "cloudtasks-emulator", "github.com/aertje/cloud-tasks-emulator")
	port, oidcPort := emulator.FreePort(t), emulator.FreePort(t)
	issuer := "http://127.0.0.1:" + oidcPort
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port, "-openid-issuer", issuer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		unavailable(t, "start: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("emulator output:\n%s", out)
		}
	})
	addr = "127.0.0.1:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			unavailable(t, "exited at start:\n%s", out)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, issuer + "/jwks"
		}
		if time.Now().After(deadline) {
			unavailable(t, "not listening on %s after 30s:\n%s", addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func emulatorOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// delivery is one request that reached the grant URL.
type delivery struct {
	at     time.Time
	method string
	path   string
	header http.Header
	body   string
}

// redirect sends every request to target: the validator fetches the
// emulator's keys instead of Google's.
type redirect struct{ target *url.URL }

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL = r.target
	req.Host = r.target.Host
	return http.DefaultTransport.RoundTrip(req)
}

func TestCloudTasksOnEmulator(t *testing.T) {
	addr, jwksURL := startEmulator(t)
	ctx := t.Context()
	const (
		parent = "projects/demo-paymeter/locations/europe-west2"
		queue  = parent + "/queues/free-grants"
	)

	raw, err := cloudtasks.NewClient(ctx, emulatorOptions(addr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.CreateQueue(ctx, &cloudtaskspb.CreateQueueRequest{Parent: parent,
		Queue: &cloudtaskspb.Queue{Name: queue}}); err != nil {
		t.Fatalf("create queue: %v", err)
	}

	got := make(chan delivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{at: time.Now(), method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: string(b)}
	}))
	defer srv.Close()

	ct, err := tasks.NewCloudTasks(ctx, tasks.CloudTasksConfig{
		Queue: queue, GrantURL: srv.URL + "/api/tasks/grant", ServiceAccount: testAccount, Audience: testAudience,
	}, emulatorOptions(addr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()

	task := billing.GrantTask{UID: "user-1", Period: 7, At: time.Now().Add(1500 * time.Millisecond)}
	if err := ct.ScheduleGrant(ctx, task); err != nil {
		t.Fatalf("schedule: %v", err)
	}
	if err := ct.ScheduleGrant(ctx, task); err != nil {
		t.Fatalf("schedule the same task again: %v, want nil", err)
	}
	// Underneath, the second create was refused as AlreadyExists.
	_, err = raw.CreateTask(ctx, &cloudtaskspb.CreateTaskRequest{Parent: queue, Task: &cloudtaskspb.Task{
		Name: ct.TaskName(task),
		MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: &cloudtaskspb.HttpRequest{
			Url: srv.URL, HttpMethod: cloudtaskspb.HttpMethod_POST}},
	}})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("raw create of the same name: %v, want AlreadyExists", err)
	}
	pending, err := raw.GetTask(ctx, &cloudtaskspb.GetTaskRequest{Name: ct.TaskName(task)})
	if err != nil {
		t.Fatalf("get task: %v", err)
	}
	if pending.GetScheduleTime().AsTime().Sub(task.At).Abs() > time.Millisecond {
		t.Errorf("schedule time %s, want %s", pending.GetScheduleTime().AsTime(), task.At)
	}

	var d delivery
	select {
	case d = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the task was not delivered within 15s")
	}
	if d.at.Before(task.At.Add(-100 * time.Millisecond)) {
		t.Errorf("delivered at %s, before its schedule time %s", d.at, task.At)
	}
	if d.method != http.MethodPost || d.path != "/api/tasks/grant" {
		t.Errorf("request %s %s, want POST /api/tasks/grant", d.method, d.path)
	}
	if d.body != `{"uid":"user-1","period":7}` {
		t.Errorf("body %s", d.body)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if name := d.header.Get("X-CloudTasks-TaskName"); name != tasks.TaskID("user-1", 7) {
		t.Errorf("X-CloudTasks-TaskName %q, want %q", name, tasks.TaskID("user-1", 7))
	}
	if q := d.header.Get("X-CloudTasks-QueueName"); q != "free-grants" {
		t.Errorf("X-CloudTasks-QueueName %q", q)
	}

	// The bearer token is an OIDC token for the service account and the
	// audience, signed by the emulator's key.
	auth := d.header.Get("Authorization")
	token, ok := bytes.CutPrefix([]byte(auth), []byte("Bearer "))
	if !ok {
		t.Fatalf("Authorization %q, want a bearer token", auth)
	}
	keys, _ := url.Parse(jwksURL)
	v, err := idtoken.NewValidator(ctx, option.WithHTTPClient(&http.Client{Transport: redirect{keys}}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Validate(ctx, string(token), testAudience)
	if err != nil {
		t.Fatalf("the task's token does not verify with the emulator's keys: %v", err)
	}
	if p.Claims["email"] != testAccount || p.Claims["email_verified"] != true {
		t.Errorf("token claims %v, want email %s, verified", p.Claims, testAccount)
	}
	// RequireOIDC wants Google as the issuer, so it refuses the emulator's.
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("Authorization", auth)
	tasks.RequireOIDC(testAudience, testAccount, v, nil)(http.NotFoundHandler()).ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("RequireOIDC with the emulator's token: %d, want 401", w.Code)
	}

	// The name of a task that ran stays taken (for ever on the emulator,
	// about an hour on Cloud Tasks): scheduling it again is a no-op.
	if err := ct.ScheduleGrant(ctx, billing.GrantTask{UID: "user-1", Period: 7, At: time.Now()}); err != nil {
		t.Fatalf("schedule after it ran: %v, want nil", err)
	}
	// A task due in the past runs at once; and only it arrives.
	if err := ct.ScheduleGrant(ctx, billing.GrantTask{UID: "user-1", Period: 8, At: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatalf("schedule overdue: %v", err)
	}
	select {
	case d = <-got:
		if d.body != `{"uid":"user-1","period":8}` {
			t.Fatalf("delivered %s, want period 8 (period 7 ran already)", d.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the overdue task was not delivered within 10s")
	}
	select {
	case d = <-got:
		t.Fatalf("unexpected delivery %s", d.body)
	case <-time.After(time.Second):
	}

	// A failure other than AlreadyExists is an error.
	missing, err := tasks.NewCloudTasks(ctx, tasks.CloudTasksConfig{
		Queue: parent + "/queues/no-such-queue", GrantURL: srv.URL, ServiceAccount: testAccount,
	}, emulatorOptions(addr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer missing.Close()
	if err := missing.ScheduleGrant(ctx, task); status.Code(err) != codes.NotFound {
		t.Fatalf("schedule on a missing queue: %v, want NotFound", err)
	}
}

func TestNewCloudTasksRefusesBadConfig(t *testing.T) {
	good := tasks.CloudTasksConfig{Queue: "projects/p/locations/l/queues/q", GrantURL: "https://x.example/grant", ServiceAccount: testAccount}
	for _, tt := range []struct {
		name string
		edit func(*tasks.CloudTasksConfig)
	}{
		{"queue not a full name", func(c *tasks.CloudTasksConfig) { c.Queue = "free-grants" }},
		{"relative URL", func(c *tasks.CloudTasksConfig) { c.GrantURL = "/api/tasks/grant" }},
		{"no service account", func(c *tasks.CloudTasksConfig) { c.ServiceAccount = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := tasks.NewCloudTasks(t.Context(), cfg, option.WithoutAuthentication()); err == nil {
				t.Fatal("NewCloudTasks accepted it")
			}
		})
	}
}

func TestTaskID(t *testing.T) {
	a, b := tasks.TaskID("u", 1), tasks.TaskID("u", 2)
	if a != tasks.TaskID("u", 1) || a == b || tasks.TaskID("u|1", 0) == tasks.TaskID("u", 10) {
		t.Fatalf("task ids not deterministic and distinct: %s %s", a, b)
	}
	if len(a) != len("grant-")+32 {
		t.Fatalf("task id %q: want grant- and 32 hex digits", a)
	}
}
