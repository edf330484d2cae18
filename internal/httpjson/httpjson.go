// Package httpjson writes JSON responses and the contract's error body,
// {"error": {"code": "...", "message": "..."}}, for every HTTP handler.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the contract's error shape.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Write answers status with v as JSON. It is never cached unless the
// handler set its own Cache-Control first (GET /api/plans is public).
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers status with the contract's error body.
func Error(w http.ResponseWriter, status int, code, message string) {
	var body ErrorBody
	body.Error.Code = code
	body.Error.Message = message
	Write(w, status, body)
}
