package functions_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/paymeter/paymeter/functions"
)

// TestLoggerJSON: in production every line is one JSON object whose
// "severity" and "message" Cloud Logging reads, with WARNING spelled as it
// wants; the other fields, grouped ones included, are left as they are.
func TestLoggerJSON(t *testing.T) {
	var buf bytes.Buffer
	log := functions.NewLogger(&buf, "json")
	log.Info("request", "path", "/api/meter", "status", 200)
	log.Warn("grant task failed; retrying", "uid", "u1")
	log.Error("apply event", "err", "unavailable")
	log.WithGroup("http").Info("grouped", "level", "kept", "msg", "kept")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []struct{ severity, message string }{
		{"INFO", "request"}, {"WARNING", "grant task failed; retrying"}, {"ERROR", "apply event"}, {"INFO", "grouped"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
		}
		if got["severity"] != want[i].severity || got["message"] != want[i].message {
			t.Errorf("line %d: severity %v, message %v; want %s, %q", i, got["severity"], got["message"], want[i].severity, want[i].message)
		}
		for _, k := range []string{"level", "msg"} {
			if _, ok := got[k]; ok {
				t.Errorf("line %d has %q, which Cloud Logging does not read: %s", i, k, line)
			}
		}
		if _, ok := got["time"]; !ok {
			t.Errorf("line %d has no time: %s", i, line)
		}
	}
	var first map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	if first["path"] != "/api/meter" || first["status"] != float64(200) {
		t.Errorf("attributes lost: %s", lines[0])
	}
	var grouped struct {
		HTTP map[string]any `json:"http"`
	}
	_ = json.Unmarshal([]byte(lines[3]), &grouped)
	if grouped.HTTP["level"] != "kept" || grouped.HTTP["msg"] != "kept" {
		t.Errorf("a group's own level and msg fields were renamed: %s", lines[3])
	}
}

// TestLoggerText: locally (LOG_FORMAT=text) lines are slog's key=value text.
func TestLoggerText(t *testing.T) {
	var buf bytes.Buffer
	functions.NewLogger(&buf, "text").Warn("grant task failed; retrying", "uid", "u1")
	line := buf.String()
	for _, want := range []string{"level=WARN", `msg="grant task failed; retrying"`, "uid=u1"} {
		if !strings.Contains(line, want) {
			t.Errorf("text line %q lacks %q", line, want)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(line), "{") {
		t.Errorf("text logger wrote JSON: %s", line)
	}
}
