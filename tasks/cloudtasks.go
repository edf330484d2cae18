package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paymeter/paymeter/billing"
)

// CloudTasksConfig says where grant tasks go and how they authenticate.
type CloudTasksConfig struct {
	// Queue is the full queue name: projects/P/locations/L/queues/Q.
	Queue string
	// GrantURL is the URL of the TaskGrant function that each task POSTs to.
	GrantURL string
	// ServiceAccount is the email of the account whose OIDC token each task
	// carries; the queue's caller needs iam.serviceAccounts.actAs on it.
	ServiceAccount string
	// Audience is the token's audience; empty means GrantURL.
	Audience string
	// NotifyURL is the URL of the TaskNotify function that notice tasks
	// POST to (the audience of their tokens), and NotifyQueue their queue
	// (default Queue); notices are not scheduled without NotifyURL.
	NotifyURL   string
	NotifyQueue string
}

var queueName = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]+$`)

func (c CloudTasksConfig) validate() error {
	if !queueName.MatchString(c.Queue) {
		return fmt.Errorf("tasks queue %q is not projects/P/locations/L/queues/Q", c.Queue)
	}
	u, err := url.Parse(c.GrantURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("tasks grant URL %q is not an absolute http(s) URL", c.GrantURL)
	}
	if c.ServiceAccount == "" {
		return errors.New("tasks service account is empty")
	}
	if c.NotifyQueue != "" && !queueName.MatchString(c.NotifyQueue) {
		return fmt.Errorf("notify queue %q is not projects/P/locations/L/queues/Q", c.NotifyQueue)
	}
	return nil
}

// CloudTasks schedules grant tasks on Google Cloud Tasks. Each task is an
// HTTP POST of {"uid","period"} to the grant URL at the grant's due time,
// with an OIDC token for the service account, named after (uid, period) so
// that Cloud Tasks refuses a second one.
type CloudTasks struct {
	client *cloudtasks.Client
	cfg    CloudTasksConfig
}

var (
	_ billing.Scheduler       = (*CloudTasks)(nil)
	_ billing.NoticeScheduler = (*CloudTasks)(nil)
)

// NewCloudTasks dials Cloud Tasks with opts (none in production: the
// function's default credentials). It returns an error for an invalid
// configuration or when the client cannot be created. Close releases it.
func NewCloudTasks(ctx context.Context, cfg CloudTasksConfig, opts ...option.ClientOption) (*CloudTasks, error) {
	if cfg.Audience == "" {
		cfg.Audience = cfg.GrantURL
	}
	if cfg.NotifyQueue == "" {
		cfg.NotifyQueue = cfg.Queue
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := cloudtasks.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud tasks client: %w", err)
	}
	return &CloudTasks{client: client, cfg: cfg}, nil
}

// Close closes the connection to Cloud Tasks.
func (c *CloudTasks) Close() error { return c.client.Close() }

// TaskID is the name, within its queue, of the task that grants period to
// uid: "grant-" and 32 hex digits of sha256("uid|period"). Equal inputs give
// equal names, which is what de-duplicates the chain.
func TaskID(uid string, period int64) string {
	sum := sha256.Sum256([]byte(uid + "|" + strconv.FormatInt(period, 10)))
	return "grant-" + hex.EncodeToString(sum[:])[:32]
}

// TaskName is the full Cloud Tasks name of t's task in c's queue.
func (c *CloudTasks) TaskName(t billing.GrantTask) string {
	return c.cfg.Queue + "/tasks/" + TaskID(t.UID, t.Period)
}

// ScheduleGrant creates t's task, due at t.At (a time in the past runs it at
// once). A task of the same name that exists, or ran or was deleted recently
// (about an hour on Cloud Tasks), makes it return nil. Any other failure is
// returned wrapped, with its gRPC status.
func (c *CloudTasks) ScheduleGrant(ctx context.Context, t billing.GrantTask) error {
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("schedule grant %s period %d: %w", t.UID, t.Period, err)
	}
	req := &cloudtaskspb.CreateTaskRequest{
		Parent: c.cfg.Queue,
		Task: &cloudtaskspb.Task{
			Name:         c.TaskName(t),
			ScheduleTime: timestamppb.New(t.At),
			MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: &cloudtaskspb.HttpRequest{
				HttpMethod: cloudtaskspb.HttpMethod_POST,
				Url:        c.cfg.GrantURL,
				Headers:    map[string]string{"Content-Type": "application/json"},
				Body:       body,
				AuthorizationHeader: &cloudtaskspb.HttpRequest_OidcToken{OidcToken: &cloudtaskspb.OidcToken{
					ServiceAccountEmail: c.cfg.ServiceAccount,
					Audience:            c.cfg.Audience,
				}},
			}},
		},
	}
	if _, err := c.client.CreateTask(ctx, req); err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return fmt.Errorf("schedule grant %s period %d: %w", t.UID, t.Period, err)
	}
	return nil
}

// NoticeTaskID is the name, within its queue, of the task that delivers
// notice t: "notice-" and 32 hex digits of sha256("uid|id").
func NoticeTaskID(t billing.NoticeTask) string {
	sum := sha256.Sum256([]byte(t.UID + "|" + t.ID))
	return "notice-" + hex.EncodeToString(sum[:])[:32]
}

// ScheduleNotice creates the task that delivers notice t now, named after
// it, so that scheduling it again makes no second task (nil is returned).
// Without a NotifyURL it does nothing: notices stay in the outbox.
func (c *CloudTasks) ScheduleNotice(ctx context.Context, t billing.NoticeTask) error {
	if c.cfg.NotifyURL == "" {
		return nil
	}
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("schedule notice %s of %s: %w", t.ID, t.UID, err)
	}
	req := &cloudtaskspb.CreateTaskRequest{
		Parent: c.cfg.NotifyQueue,
		Task: &cloudtaskspb.Task{
			Name: c.cfg.NotifyQueue + "/tasks/" + NoticeTaskID(t),
			MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: &cloudtaskspb.HttpRequest{
				HttpMethod: cloudtaskspb.HttpMethod_POST,
				Url:        c.cfg.NotifyURL,
				Headers:    map[string]string{"Content-Type": "application/json"},
				Body:       body,
				AuthorizationHeader: &cloudtaskspb.HttpRequest_OidcToken{OidcToken: &cloudtaskspb.OidcToken{
					ServiceAccountEmail: c.cfg.ServiceAccount,
					Audience:            c.cfg.NotifyURL,
				}},
			}},
		},
	}
	if _, err := c.client.CreateTask(ctx, req); err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return fmt.Errorf("schedule notice %s of %s: %w", t.ID, t.UID, err)
	}
	return nil
}
