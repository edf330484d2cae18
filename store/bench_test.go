package store_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/store"
)

// BenchmarkDebitKey is the metered path's storage cost on the Firestore
// emulator: one call after another on one key. It reports the Firestore
// RPCs each call makes (rpcs/op) and the commits among them (commits/op).
func BenchmarkDebitKey(b *testing.B) {
	emulator.Firestore(b)
	var rpcs, commits atomic.Int64
	count := func(method string) {
		rpcs.Add(1)
		if method == "/google.firestore.v1.Firestore/Commit" {
			commits.Add(1)
		}
	}
	unary := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		count(method)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner")
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	stream := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		count(method)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner")
		return streamer(ctx, desc, cc, method, opts...)
	})
	ctx := context.Background()
	// The SDK dials the emulator itself when FIRESTORE_EMULATOR_HOST is set,
	// ignoring dial options; dial it here instead, with the counters and the
	// emulator's admin credential.
	host := os.Getenv("FIRESTORE_EMULATOR_HOST")
	b.Setenv("FIRESTORE_EMULATOR_HOST", "")
	client, err := firestore.NewClient(ctx, fmt.Sprintf("demo-bench-%d", time.Now().UnixNano()),
		option.WithEndpoint(host), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(unary), option.WithGRPCDialOption(stream))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s := store.New(client, billing.Plan{Name: billing.PlanFree, Credits: 1 << 40, Period: "week"})
	if _, _, err := s.Provision(ctx, billing.Identity{UID: "bench"}, t0); err != nil {
		b.Fatal(err)
	}
	_, key, hash, _ := billing.NewAPIKey(randReader{}, "bench", "bench", t0)
	if err := s.CreateKey(ctx, hash, key); err != nil {
		b.Fatal(err)
	}
	rpcs.Store(0)
	commits.Store(0)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.DebitKey(ctx, hash, 1, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rpcs.Load())/float64(b.N), "rpcs/op")
	b.ReportMetric(float64(commits.Load())/float64(b.N), "commits/op")
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	return len(p), nil
}
