package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/paymeter/paymeter/internal/httpjson"
)

// firestoreStats counts this process's Firestore RPCs by method, the
// documents its reads returned and the writes its commits carried, for
// GET /dev/stats (cmd/load reads it to report commits per 1,000 calls),
// and the transactions open now (a test freezes the process outside them).
type firestoreStats struct {
	mu     sync.Mutex
	rpcs   map[string]int64
	reads  int64
	writes int64
	open   int64
	// kinds counts the writes by what they write: the collection of the
	// document, "accounts/usage" for a subcollection.
	kinds map[string]int64
}

// opened counts a transaction begun (n 1) or ended (n -1).
func (s *firestoreStats) opened(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open += n
}

func (s *firestoreStats) add(method string, writes []*firestorepb.Write) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rpcs[method[strings.LastIndex(method, "/")+1:]]++
	s.writes += int64(len(writes))
	for _, w := range writes {
		s.kinds[writeKind(w)]++
	}
}

// writeKind names what w writes: its document's collections, without the
// ids ("accounts/usage").
func writeKind(w *firestorepb.Write) string {
	name := w.GetUpdate().GetName()
	if name == "" {
		name = w.GetDelete()
	}
	if name == "" {
		name = w.GetTransform().GetDocument()
	}
	_, path, _ := strings.Cut(name, "/documents/")
	parts := strings.Split(path, "/")
	var cols []string
	for i := 0; i < len(parts); i += 2 {
		cols = append(cols, parts[i])
	}
	return strings.Join(cols, "/")
}

func (s *firestoreStats) read() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
}

// serve answers GET /dev/stats.
func (s *firestoreStats) serve(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	httpjson.Write(w, http.StatusOK, map[string]any{"firestore": map[string]any{
		"rpcs": maps.Clone(s.rpcs), "commits": s.rpcs["Commit"], "documentsRead": s.reads, "writes": s.writes,
		"writesByKind": maps.Clone(s.kinds), "openTransactions": s.open}})
}

// countedFirestore dials the Firestore emulator with interceptors that feed
// stats. The SDK dials the emulator itself when FIRESTORE_EMULATOR_HOST is
// set, ignoring dial options, so it is dialled here with the emulator's
// admin credential instead.
func countedFirestore(ctx context.Context, project string, stats *firestoreStats) (*firestore.Client, error) {
	host := os.Getenv("FIRESTORE_EMULATOR_HOST")
	unary := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var writes []*firestorepb.Write
		ends := false
		switch r := req.(type) {
		case *firestorepb.CommitRequest:
			writes, ends = r.Writes, len(r.Transaction) > 0
		case *firestorepb.RollbackRequest:
			ends = true
		}
		stats.add(method, writes)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner")
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch {
		case ends:
			stats.opened(-1)
		case err == nil && strings.HasSuffix(method, "/BeginTransaction"):
			stats.opened(1)
		}
		return err
	})
	stream := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		stats.add(method, nil)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner")
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countedStream{ClientStream: cs, stats: stats}, nil
	})
	// With the variable set the SDK ignores the dial options; it is put back
	// for everything else.
	os.Setenv("FIRESTORE_EMULATOR_HOST", "")
	defer os.Setenv("FIRESTORE_EMULATOR_HOST", host)
	client, err := firestore.NewClientWithDatabase(ctx, project, firestore.DefaultDatabaseID,
		option.WithEndpoint(host), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(unary), option.WithGRPCDialOption(stream))
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	return client, nil
}

// countedStream counts the documents a BatchGetDocuments or RunQuery
// stream returns.
type countedStream struct {
	grpc.ClientStream
	stats *firestoreStats
}

func (c *countedStream) RecvMsg(m any) error {
	err := c.ClientStream.RecvMsg(m)
	if err == nil {
		switch r := m.(type) {
		case *firestorepb.BatchGetDocumentsResponse:
			if r.GetFound() != nil || r.GetMissing() != "" {
				c.stats.read() // a missing document is billed as a read too
			}
		case *firestorepb.RunQueryResponse:
			if r.GetDocument() != nil {
				c.stats.read()
			}
		}
	}
	return err
}
