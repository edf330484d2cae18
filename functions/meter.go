package functions

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// meter debits the caller's account by the operator's cost of the route.
func (s *Server) meter(w http.ResponseWriter, r *http.Request) {
	cost, ok := s.costOf(r.URL.Path)
	if !ok {
		s.Fail(w, r, errNoRoute)
		return
	}
	key, err := apiKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	c, err := s.chargeKey(r.Context(), key, meteredRoute(r.URL.Path), cost)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	w.Header().Set("X-Credits-Remaining", strconv.FormatInt(c.Remaining, 10))
	httpjson.Write(w, http.StatusOK, map[string]int64{"credits": c.Remaining})
}

// meteredRoute is the route a call of path is metered as: the function's
// own URL ("/") is /api/meter.
func meteredRoute(path string) string {
	if path == "/" || path == "" {
		return "/api/meter"
	}
	return path
}

// costOf is the operator's cost of a metered path. The function's own URL
// ("/") costs what /api/meter costs.
func (s *Server) costOf(path string) (int64, bool) {
	if path == "/" || path == "" {
		path = "/api/meter"
	}
	cost, ok := s.Config.MeterCosts[path]
	return cost, ok
}

var errNoKey = &billing.Error{Code: billing.CodeInvalidAPIKey,
	Message: "pass an API key as Authorization: Bearer <key>, X-API-Key: <key> or a JSON body {\"key\":\"<key>\"}"}

// apiKey finds the key in the Authorization or X-API-Key header or, for the
// original quickstart's clients, a JSON body {"key": "..."}. A body that is
// present must be a JSON object.
func apiKey(r *http.Request) (string, error) {
	body, err := httpjson.ReadBody(r)
	if err != nil {
		return "", err
	}
	var in struct {
		Key *string `json:"key"`
	}
	if strings.TrimSpace(string(body)) != "" {
		if err := httpjson.DecodeBytes(body, &in, false); err != nil {
			return "", err
		}
	}
	if k, ok := httpjson.Bearer(r); ok {
		return k, nil
	}
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k, nil
	}
	if in.Key != nil && *in.Key != "" {
		return *in.Key, nil
	}
	return "", errNoKey
}
