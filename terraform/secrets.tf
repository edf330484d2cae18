# The two Stripe secrets, keyed by the environment variable each is mounted as.
# Terraform creates the secrets only: their values are added with gcloud (see
# README.md), so they never pass through variables, plans or state. The
# functions that call Stripe mount each secret's newest version by number
# (functions.tf), so adding a version and applying rolls them onto it.
locals {
  stripe_secrets = {
    STRIPE_SECRET_KEY     = "stripe-secret-key"
    STRIPE_WEBHOOK_SECRET = "stripe-webhook-secret"
    # Not Stripe's: the operator API's bearer secret, mounted by the
    # operator function only, given its value the same way.
    PAYMETER_OPERATOR_SECRET = "paymeter-operator-secret"
  }
}

resource "google_secret_manager_secret" "stripe" {
  for_each = local.stripe_secrets

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "functions_read_stripe" {
  for_each = local.stripe_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.stripe[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

# The newest version of each secret, by number: its metadata only
# (fetch_secret_data off), so no value reaches the plan or the state.
data "google_secret_manager_secret_version" "stripe" {
  for_each = local.stripe_secrets

  project           = var.project_id
  secret            = google_secret_manager_secret.stripe[each.key].secret_id
  fetch_secret_data = false
}

# The notices' secrets, as the Stripe ones: created here, their values added
# with gcloud (terraform/README.md), read by the functions' account, mounted
# by TaskNotify alone. Each is mounted, and its version looked up, only once
# the deployment uses it (smtp_enabled, operator_webhook_url), since a secret
# with no version can be neither.
locals {
  notify_secrets = {
    SMTP_URL                = "smtp-url"
    OPERATOR_WEBHOOK_SECRET = "operator-webhook-secret"
  }
  notify_secrets_mounted = {
    for env, id in local.notify_secrets : env => id
    if(env == "SMTP_URL" && var.smtp_enabled) || (env == "OPERATOR_WEBHOOK_SECRET" && var.operator_webhook_url != "")
  }

  # Every mountable secret's id and newest version, by environment variable.
  secret_ids = merge(
    { for env, s in google_secret_manager_secret.stripe : env => s.secret_id },
    { for env, s in google_secret_manager_secret.notify : env => s.secret_id },
  )
  secret_versions = merge(
    { for env, v in data.google_secret_manager_secret_version.stripe : env => v.version },
    { for env, v in data.google_secret_manager_secret_version.notify : env => v.version },
  )
}

resource "google_secret_manager_secret" "notify" {
  for_each = local.notify_secrets

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "functions_read_notify" {
  for_each = local.notify_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.notify[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

data "google_secret_manager_secret_version" "notify" {
  for_each = local.notify_secrets_mounted

  project           = var.project_id
  secret            = google_secret_manager_secret.notify[each.key].secret_id
  fetch_secret_data = false
}
