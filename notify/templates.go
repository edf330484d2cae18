package notify

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// view is what an email's templates render.
type view struct {
	Subject   string
	Lines     []string
	Dashboard string // the dashboard's URL
	Settings  bool   // whether the owner may turn this email off
}

var textEmail = texttemplate.Must(texttemplate.New("text").Parse(`{{.Subject}}

{{range .Lines}}{{.}}

{{end}}Your dashboard: {{.Dashboard}}
{{if .Settings}}You can choose which emails you get under Notifications in your dashboard.
{{else}}This email is about money and is always sent.
{{end}}-- Paymeter
`))

var htmlEmail = htmltemplate.Must(htmltemplate.New("html").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Subject}}</title></head>
<body style="font-family: system-ui, sans-serif; color: #1f2937; max-width: 36rem; margin: 2rem auto; padding: 0 1rem">
<h1 style="font-size: 1.3rem">{{.Subject}}</h1>
{{range .Lines}}<p>{{.}}</p>
{{end}}<p><a href="{{.Dashboard}}" style="display: inline-block; background: #4f46e5; color: #fff; padding: .5rem 1rem; border-radius: .4rem; text-decoration: none">Open your dashboard</a></p>
<p style="color: #6b7280; font-size: .85rem">{{if .Settings}}You can choose which emails you get under Notifications in your dashboard.{{else}}This email is about money and is always sent.{{end}}</p>
</body></html>
`))

// render returns the email of n for its owner.
func render(n billing.Notice, dashboard string) (Email, error) {
	v := view{Subject: billing.NoticeSummary(n), Dashboard: dashboard, Settings: true}
	d := n.Data
	switch n.Type {
	case billing.NoticeLowBalance:
		v.Lines = []string{fmt.Sprintf("Your balance is %d credits, below your alert threshold of %d.", d.Balance, d.Threshold),
			"When it reaches zero, your API calls are refused with 402 until credits come in: buy credits or change plan to keep going."}
	case billing.NoticeExhausted:
		v.Lines = []string{fmt.Sprintf("An API call costing %d credits was refused: your balance is %d.", d.Cost, d.Balance),
			"Calls are refused with 402 until credits come in: buy credits, subscribe, or wait for your next Free grant."}
		if d.Debt > 0 {
			v.Lines[0] = fmt.Sprintf("An API call was refused: your account owes %d credits after a refund or dispute.", d.Debt)
		}
	case billing.NoticePaymentFailed:
		v.Settings = false
		v.Lines = []string{fmt.Sprintf("We could not take a payment: %s.", d.Reason),
			"Please check your card in the billing portal (Manage billing in your dashboard); the payment is retried."}
	case billing.NoticeSubscription:
		if d.Status == billing.StatusCanceled || d.Status == billing.StatusIncompleteExpired {
			v.Lines = []string{fmt.Sprintf("Your %s subscription has ended and your account is back on the Free plan.", d.Plan),
				"Credits already granted stay until they expire; the weekly Free credits resume."}
		} else {
			v.Lines = []string{fmt.Sprintf("Your %s subscription is cancelled and ends on %s.", d.Plan, d.PeriodEnd.UTC().Format(time.DateOnly)),
				"Until then nothing changes. You can resume it in the billing portal."}
		}
	case billing.NoticeClawback:
		v.Settings = false
		v.Lines = []string{fmt.Sprintf("%s: %d credits were taken back from your balance.", d.Reason, d.TakenBack)}
		if d.Debt > 0 {
			v.Lines = append(v.Lines, fmt.Sprintf("%d credits had already been spent and are now owed; API calls are refused until credits that come in have paid them.", d.Debt))
		}
		v.Lines = append(v.Lines, fmt.Sprintf("Your balance is now %d credits.", d.Balance))
	}
	var text, html bytes.Buffer
	if err := textEmail.Execute(&text, v); err != nil {
		return Email{}, fmt.Errorf("render %s: %w", n.ID, err)
	}
	if err := htmlEmail.Execute(&html, v); err != nil {
		return Email{}, fmt.Errorf("render %s: %w", n.ID, err)
	}
	return Email{To: n.Email, Subject: v.Subject, Text: text.String(), HTML: html.String(),
		MessageID: n.ID + "." + n.UID + "@paymeter.notice"}, nil
}
