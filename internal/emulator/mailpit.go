package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Mailpit is a running Mailpit (github.com/axllent/mailpit, built from its
// Go module pinned in tools/mailpit): a real SMTP server and its API.
type Mailpit struct {
	SMTP string // host:port
	API  string // http://host:port
	// User and Password are the only SMTP credentials it accepts.
	User, Password string
}

// StartMailpit builds Mailpit on first use and runs it on free loopback
// ports until the test ends, accepting SMTP logins of user Paymeter with a
// random password only (no TLS: loopback). With CI=true a failure to build
// or start it fails the test; elsewhere it skips.
func StartMailpit(t testing.TB) *Mailpit {
	t.Helper()
	bin := BuildTool(t, "mailpit", "github.com/axllent/mailpit")
	dir := t.TempDir()
	m := &Mailpit{SMTP: "127.0.0.1:" + FreePort(t), API: "http://127.0.0.1:" + FreePort(t),
		User: "paymeter", Password: fmt.Sprintf("pw-%d", time.Now().UnixNano())}
	auth := filepath.Join(dir, "auth")
	if err := os.WriteFile(auth, []byte(m.User+":"+m.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(m.API)
	cmd := exec.Command(bin, "--listen", u.Host, "--smtp", m.SMTP, "--database", filepath.Join(dir, "mail.db"),
		"--smtp-auth-file", auth, "--smtp-auth-allow-insecure", "--quiet")
	out, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		Unavailable(t, "mailpit", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		out.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := client.Get(m.API + "/api/v1/info")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return m
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(out.Name())
			Unavailable(t, "mailpit", fmt.Errorf("exited at start: %s", log))
		default:
		}
		if time.Now().After(deadline) {
			Unavailable(t, "mailpit", fmt.Errorf("not answering at %s after 30s", m.API))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the SMTP_URL that logs in with password.
func (m *Mailpit) URL(password string) string {
	return "smtp://" + url.UserPassword(m.User, password).String() + "@" + m.SMTP
}

// MailMessage is one message as Mailpit's API lists it.
type MailMessage struct {
	ID        string `json:"ID"`
	MessageID string `json:"MessageID"`
	Subject   string `json:"Subject"`
	To        []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// Messages lists every message Mailpit holds, newest first.
func (m *Mailpit) Messages(t testing.TB) []MailMessage {
	t.Helper()
	var out struct {
		Messages []MailMessage `json:"messages"`
	}
	do(t, "GET", m.API+"/api/v1/messages?limit=500", nil, nil, &out)
	return out.Messages
}

// To lists the messages to address, newest first.
func (m *Mailpit) To(t testing.TB, address string) []MailMessage {
	t.Helper()
	var out []MailMessage
	for _, msg := range m.Messages(t) {
		for _, to := range msg.To {
			if to.Address == address {
				out = append(out, msg)
			}
		}
	}
	return out
}

// Text returns the plain-text body of message id.
func (m *Mailpit) Text(t testing.TB, id string) string {
	t.Helper()
	var out struct {
		Text string `json:"Text"`
		HTML string `json:"HTML"`
	}
	do(t, "GET", m.API+"/api/v1/message/"+url.PathEscape(id), nil, nil, &out)
	return out.Text
}
