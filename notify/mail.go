package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	mail "github.com/wneessen/go-mail"
)

// Email is one message to send.
type Email struct {
	MessageID string // without angle brackets
	To        string
	Subject   string
	Text      string
	HTML      string
}

// Mailer sends an email; the error is safe to log (it never holds the
// SMTP password).
type Mailer interface {
	Send(ctx context.Context, e Email) error
}

// SMTP sends email with github.com/wneessen/go-mail, one connection per
// message (a notice is rare; a pool would idle).
type SMTP struct {
	from string
	opts []mail.Option
	host string
}

// NewSMTP returns the mailer of rawURL, SMTP_URL's value:
// smtp://[user:password@]host[:port] (STARTTLS required, port 587) or
// smtps://... (TLS from the start, port 465); smtp:// to a loopback host
// (Mailpit, locally) needs no TLS. from is MAIL_FROM. Its errors never
// include the password.
func NewSMTP(rawURL, from string) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") {
		return nil, errors.New("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
	}
	if from == "" {
		return nil, errors.New("MAIL_FROM must be set with SMTP_URL")
	}
	host := u.Hostname()
	opts := []mail.Option{mail.WithTimeout(20 * time.Second)}
	port := 587
	loopback := host == "127.0.0.1" || host == "localhost" || host == "::1"
	switch {
	case u.Scheme == "smtps":
		port = 465
		opts = append(opts, mail.WithSSL())
	case loopback:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, errors.New("SMTP_URL has a bad port")
		}
	}
	opts = append(opts, mail.WithPort(port))
	if u.User != nil {
		pw, _ := u.User.Password()
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(u.User.Username()), mail.WithPassword(pw))
	}
	return &SMTP{from: from, opts: opts, host: host}, nil
}

// Send sends e. Its error names the SMTP host and what failed, never the
// credentials.
func (s *SMTP) Send(ctx context.Context, e Email) error {
	m := mail.NewMsg()
	if err := m.From(s.from); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := m.To(e.To); err != nil {
		return fmt.Errorf("mail to: %w", err)
	}
	m.Subject(e.Subject)
	m.SetMessageIDWithValue(e.MessageID)
	m.SetDate()
	m.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetBodyString(mail.TypeTextPlain, e.Text)
	m.AddAlternativeString(mail.TypeTextHTML, e.HTML)
	c, err := mail.NewClient(s.host, s.opts...)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.host, err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("smtp %s: send: %w", s.host, err)
	}
	return nil
}
