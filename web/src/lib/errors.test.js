import { describe, expect, it } from 'vitest'
import { ApiError, apiErrorFrom, humanMessage, messageForStatus } from './errors.js'

describe('apiErrorFrom', () => {
  it.each([
    [402, '{"error":{"code":"insufficient_credits","message":"You have no credits left."}}', 'insufficient_credits', 'You have no credits left.'],
    [400, '{"error":{"code":"invalid_plan","message":"Free cannot be bought."}}', 'invalid_plan', 'Free cannot be bought.'],
    [502, '<html>Bad gateway</html>', 'http_502', 'The server had a problem (HTTP 502). Please try again in a moment.'],
    [404, '404 page not found', 'http_404', 'That was not found.'],
    [401, '{"error":{"code":"unauthenticated","message":""}}', 'unauthenticated', 'Your session has ended. Please sign in again.'],
    [418, '{}', 'http_418', 'The request failed (HTTP 418).'],
    [500, 'null', 'http_500', 'The server had a problem (HTTP 500). Please try again in a moment.'],
  ])('status %i body %s', (status, body, code, message) => {
    const err = apiErrorFrom(status, body)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(status)
    expect(err.code).toBe(code)
    expect(err.message).toBe(message)
  })
})

describe('humanMessage', () => {
  it.each([
    [new ApiError(409, 'already_subscribed', 'You already have a subscription.'), 'You already have a subscription.'],
    [Object.assign(new Error('x'), { code: 'auth/email-already-in-use' }), 'An account with this email already exists. Sign in instead, or reset your password.'],
    [Object.assign(new Error('x'), { code: 'auth/invalid-credential' }), 'The email or password is wrong.'],
    [Object.assign(new Error('x'), { code: 'auth/some-new-thing' }), 'Sign-in failed (some new thing).'],
    [new TypeError('Failed to fetch'), 'Could not reach the server. Check your connection and try again.'],
    [Object.assign(new Error('t'), { name: 'TimeoutError' }), 'The server took too long to answer. Please try again.'],
    [new Error('Plain words'), 'Plain words'],
    [null, 'Something went wrong.'],
  ])('%o', (err, want) => {
    expect(humanMessage(err)).toBe(want)
  })

  it('has a sentence for every 5xx', () => {
    expect(messageForStatus(503)).toMatch(/try again/)
  })
})
