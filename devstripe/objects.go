package devstripe

// Stripe objects as API version 2023-10-16 serialises them in events: only
// the fields Paymeter or a reader of /dev/state could use, each with
// Stripe's name and shape (ids of related objects as strings, lists as
// {"object":"list","data":[...]}).

type list[T any] struct {
	Object  string `json:"object"`
	Data    []T    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

func newList[T any](url string, data ...T) list[T] {
	if data == nil {
		data = []T{}
	}
	return list[T]{Object: "list", Data: data, URL: url}
}

type customer struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Email  string `json:"email,omitempty"`
	// Balance is what the customer owes (positive) or is owed (negative, a
	// credit), in pence: a downgrade's negative invoice lands here and pays
	// the next invoices, as Stripe's customer balance does.
	Balance  int64             `json:"balance"`
	Created  int64             `json:"created"`
	Livemode bool              `json:"livemode"`
	Metadata map[string]string `json:"metadata"`
}

type recurring struct {
	Interval      string `json:"interval"`
	IntervalCount int64  `json:"interval_count"`
	UsageType     string `json:"usage_type"`
}

type price struct {
	ID         string            `json:"id"`
	Object     string            `json:"object"`
	Active     bool              `json:"active"`
	Currency   string            `json:"currency"`
	UnitAmount int64             `json:"unit_amount"`
	LookupKey  string            `json:"lookup_key"`
	Metadata   map[string]string `json:"metadata"`
	Product    string            `json:"product"`
	Recurring  *recurring        `json:"recurring"`
	Type       string            `json:"type"`
	Livemode   bool              `json:"livemode"`
}

type session struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Mode              string            `json:"mode"`
	Status            string            `json:"status"`
	PaymentStatus     string            `json:"payment_status"`
	Customer          string            `json:"customer"`
	ClientReferenceID string            `json:"client_reference_id"`
	Metadata          map[string]string `json:"metadata"`
	Subscription      *string           `json:"subscription"`
	PaymentIntent     *string           `json:"payment_intent"`
	AmountTotal       int64             `json:"amount_total"`
	Currency          string            `json:"currency"`
	URL               *string           `json:"url"`
	SuccessURL        string            `json:"success_url"`
	CancelURL         string            `json:"cancel_url"`
	Created           int64             `json:"created"`
	ExpiresAt         int64             `json:"expires_at"`
	Livemode          bool              `json:"livemode"`

	price    price // what it sells; not serialised
	awaiting bool  // completed unpaid, its delayed payment not yet settled
}

// Awaiting reports whether the session completed unpaid and its delayed
// payment has neither succeeded nor failed yet (for the checkout page).
func (cs session) Awaiting() bool { return cs.awaiting }

type subscriptionItem struct {
	ID           string `json:"id"`
	Object       string `json:"object"`
	Price        price  `json:"price"`
	Quantity     int64  `json:"quantity"`
	Subscription string `json:"subscription"`
	Created      int64  `json:"created"`
}

type subscription struct {
	ID                 string                 `json:"id"`
	Object             string                 `json:"object"`
	Customer           string                 `json:"customer"`
	Status             string                 `json:"status"`
	CurrentPeriodStart int64                  `json:"current_period_start"`
	CurrentPeriodEnd   int64                  `json:"current_period_end"`
	BillingCycleAnchor int64                  `json:"billing_cycle_anchor"`
	CancelAtPeriodEnd  bool                   `json:"cancel_at_period_end"`
	CancelAt           *int64                 `json:"cancel_at"`
	CanceledAt         *int64                 `json:"canceled_at"`
	EndedAt            *int64                 `json:"ended_at"`
	Created            int64                  `json:"created"`
	StartDate          int64                  `json:"start_date"`
	Currency           string                 `json:"currency"`
	Metadata           map[string]string      `json:"metadata"`
	Items              list[subscriptionItem] `json:"items"`
	LatestInvoice      *string                `json:"latest_invoice"`
	Livemode           bool                   `json:"livemode"`
}

type period struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

type lineItem struct {
	ID           string            `json:"id"`
	Object       string            `json:"object"`
	Amount       int64             `json:"amount"`
	Currency     string            `json:"currency"`
	Description  string            `json:"description"`
	Period       period            `json:"period"`
	Price        price             `json:"price"`
	Proration    bool              `json:"proration"`
	Quantity     int64             `json:"quantity"`
	Subscription string            `json:"subscription"`
	Type         string            `json:"type"`
	Metadata     map[string]string `json:"metadata"`
	Livemode     bool              `json:"livemode"`
}

type subscriptionDetails struct {
	Metadata map[string]string `json:"metadata"`
}

type invoice struct {
	ID                  string              `json:"id"`
	Object              string              `json:"object"`
	Customer            string              `json:"customer"`
	Subscription        string              `json:"subscription"`
	SubscriptionDetails subscriptionDetails `json:"subscription_details"`
	Status              string              `json:"status"`
	Paid                bool                `json:"paid"`
	AttemptCount        int64               `json:"attempt_count"`
	AmountDue           int64               `json:"amount_due"`
	AmountPaid          int64               `json:"amount_paid"`
	AmountRemaining     int64               `json:"amount_remaining"`
	Subtotal            int64               `json:"subtotal"`
	Total               int64               `json:"total"`
	StartingBalance     int64               `json:"starting_balance"`
	EndingBalance       int64               `json:"ending_balance"`
	Currency            string              `json:"currency"`
	BillingReason       string              `json:"billing_reason"`
	Charge              *string             `json:"charge"`
	PaymentIntent       *string             `json:"payment_intent"`
	PeriodStart         int64               `json:"period_start"`
	PeriodEnd           int64               `json:"period_end"`
	Created             int64               `json:"created"`
	Lines               list[lineItem]      `json:"lines"`
	Livemode            bool                `json:"livemode"`
}

type charge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Refunded       bool              `json:"refunded"`
	Disputed       bool              `json:"disputed"`
	Captured       bool              `json:"captured"`
	Paid           bool              `json:"paid"`
	Status         string            `json:"status"`
	Currency       string            `json:"currency"`
	Customer       string            `json:"customer"`
	Invoice        *string           `json:"invoice"`
	PaymentIntent  string            `json:"payment_intent"`
	Created        int64             `json:"created"`
	Metadata       map[string]string `json:"metadata"`
	Livemode       bool              `json:"livemode"`
}

type dispute struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Amount        int64             `json:"amount"`
	Charge        string            `json:"charge"`
	PaymentIntent string            `json:"payment_intent"`
	Currency      string            `json:"currency"`
	Reason        string            `json:"reason"`
	Status        string            `json:"status"`
	Created       int64             `json:"created"`
	Metadata      map[string]string `json:"metadata"`
	Livemode      bool              `json:"livemode"`
}

type eventRequest struct {
	ID             *string `json:"id"`
	IdempotencyKey *string `json:"idempotency_key"`
}

type eventData struct {
	Object any `json:"object"`
}

type event struct {
	ID              string       `json:"id"`
	Object          string       `json:"object"`
	APIVersion      string       `json:"api_version"`
	Created         int64        `json:"created"`
	Data            eventData    `json:"data"`
	Livemode        bool         `json:"livemode"`
	PendingWebhooks int64        `json:"pending_webhooks"`
	Request         eventRequest `json:"request"`
	Type            string       `json:"type"`
}
