package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
	"github.com/paymeter/paymeter/notify"
)

// notificationsJSON is the owner's notification settings as
// GET/PUT /api/notifications carry them. threshold is the effective
// low-balance threshold; defaultThreshold what it is when none is set.
type notificationsJSON struct {
	LowBalance struct {
		Enabled          bool  `json:"enabled"`
		Threshold        int64 `json:"threshold"`
		DefaultThreshold int64 `json:"defaultThreshold"`
		Custom           bool  `json:"custom"`
	} `json:"lowBalance"`
	BillingEmails bool `json:"billingEmails"`
	// MoneyEmails (payment failed, credits taken back) always go.
	MoneyEmails bool `json:"moneyEmails"`
}

func (s *Server) toNotificationsJSON(a *billing.Account) notificationsJSON {
	var out notificationsJSON
	out.LowBalance.Enabled = !a.Notify.LowBalanceOff
	out.LowBalance.Threshold = a.LowBalanceThreshold(s.Catalog)
	def := *a
	def.Notify.Threshold = 0
	out.LowBalance.DefaultThreshold = def.LowBalanceThreshold(s.Catalog)
	out.LowBalance.Custom = a.Notify.Threshold > 0
	out.BillingEmails = !a.Notify.BillingEmailsOff
	out.MoneyEmails = true
	return out
}

// notifications serves GET /api/notifications.
func (s *Server) notifications(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	httpjson.Write(w, http.StatusOK, s.toNotificationsJSON(a))
}

// putNotifications serves PUT /api/notifications
// {"lowBalance":{"enabled","threshold"},"billingEmails"}: any subset (an
// empty object changes nothing); a threshold of 0 goes back to the default.
// It answers the settings.
func (s *Server) putNotifications(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	var in struct {
		LowBalance *struct {
			Enabled   *bool  `json:"enabled"`
			Threshold *int64 `json:"threshold"`
		} `json:"lowBalance"`
		BillingEmails *bool `json:"billingEmails"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	now := s.Clock.Now()
	a, err := s.Accounts.UpdateAccount(r.Context(), a.UID, func(a *billing.Account) error {
		n := a.Notify
		if lb := in.LowBalance; lb != nil {
			if lb.Enabled != nil {
				n.LowBalanceOff = !*lb.Enabled
			}
			if lb.Threshold != nil {
				n.Threshold = *lb.Threshold
			}
		}
		if in.BillingEmails != nil {
			n.BillingEmailsOff = !*in.BillingEmails
		}
		if err := n.Validate(); err != nil {
			return err
		}
		a.Notify = n
		a.Expire(now)
		return nil
	})
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, s.toNotificationsJSON(a))
}

// notifyHandler is the TaskNotify entry point: Cloud Tasks delivers one
// notice per task, behind TaskGuard.
func (s *Server) notifyHandler() http.Handler {
	h := notify.NewHandler(s.Outbox, s.Mailer, s.OperatorWebhook, s.Config.PublicURL+"/dashboard", s.Clock, s.Log)
	return s.wrap(s.TaskGuard(s.Config.TasksNotifyURL)(h))
}
