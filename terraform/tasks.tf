# The queue of the Free-grant chain: each TaskGrant run grants the week's
# credits and enqueues the next grant as a named task. A failed grant is
# retried with backoff for a day, and the daily reconcile sweep re-arms any
# account whose chain broke, so a failure is never silently the end.
resource "google_cloud_tasks_queue" "grants" {
  project  = var.project_id
  name     = "paymeter-grants"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 50
    max_concurrent_dispatches = 20
  }

  retry_config {
    max_attempts       = 50
    max_retry_duration = "86400s"
    min_backoff        = "10s"
    max_backoff        = "3600s"
    max_doublings      = 8
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.enabled]
}

# The queue of notices: one named task per notice, retried with backoff for
# three days (the operator's webhook is retried until it answers 2xx, for as
# long as Stripe retries its own); TaskNotify gives up after that window.
resource "google_cloud_tasks_queue" "notices" {
  project  = var.project_id
  name     = "paymeter-notices"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 20
    max_concurrent_dispatches = 10
  }

  retry_config {
    max_attempts       = 100
    max_retry_duration = "259200s"
    min_backoff        = "10s"
    max_backoff        = "3600s"
    max_doublings      = 8
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.enabled]
}
