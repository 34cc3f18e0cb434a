package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// FunctionErrorHeader on an answer says the function failed as a whole,
// as Lambda's Invoke API says it.
const FunctionErrorHeader = "X-Amz-Function-Error"

// maxBatchResponse bounds the answer to a batch read from an endpoint,
// Lambda's own limit on a synchronous response.
const maxBatchResponse = MaxInvokePayload

// Invoke POSTs a Lambda SQS event to the endpoint and returns its answer,
// which the Batcher reads as Lambda would: the same body a function
// returns. A status that is not 2xx fails the whole batch, classified as
// Handle classifies it; so does an X-Amz-Function-Error header.
func (h *HTTP) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	reqCtx := ctx
	if h.timeout > 0 {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, h.url, bytes.NewReader(event))
	if err != nil {
		return nil, fmt.Errorf("build batch request to %s: %w", h.shown, err)
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Content-Type", "application/json")
	if h.auth != "" {
		req.Header.Set("Authorization", h.auth)
	}
	resp, err := h.send.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("post batch to %s: %w", h.shown, err)
		}
		return nil, Unavailable(fmt.Errorf("post batch to %s: %w", h.shown, err), false)
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, classifyStatus(resp, fmt.Errorf("post batch to %s: status %s", h.shown, resp.Status), h.now())
	}
	if t := resp.Header.Get(FunctionErrorHeader); t != "" {
		return nil, &FunctionError{Type: t}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer to a batch from %s: %w", h.shown, err)
	}
	if len(body) > maxBatchResponse {
		return nil, errors.New("the answer to a batch from " + h.shown + " is larger than 6 MB")
	}
	return body, nil
}
