# The daily sweep: Cloud Scheduler calls TaskReconcile with an OIDC token of
# the task caller, which is the only identity that function admits.
resource "google_cloud_scheduler_job" "reconcile" {
  project          = var.project_id
  region           = var.region
  name             = "paymeter-reconcile"
  description      = "Daily sweep: re-arms missed Free grants and expires lapsed grants."
  schedule         = var.reconcile_schedule
  time_zone        = var.reconcile_time_zone
  attempt_deadline = "320s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "900s"
  }

  http_target {
    http_method = "POST"
    uri         = local.run_url["task-reconcile"]

    oidc_token {
      service_account_email = google_service_account.tasks.email
      audience              = local.run_url["task-reconcile"]
    }
  }

  depends_on = [google_cloudfunctions2_function.fn, google_cloud_run_v2_service_iam_member.tasks]
}
