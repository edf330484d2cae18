# One Cloud Functions (2nd gen) function per entry point registered in
# paymeter.go, all built from one zip of the module. The map below is the one
# place that says what is deployed: the function name (which firebase.json's
# Hosting rewrites use), its entry point, whether anyone may call it, and its
# size. Functions with cpu "1" serve concurrent requests on one instance;
# the others keep Cloud Functions' default share of a CPU (0.167 with 256Mi),
# which serves one request at a time. account names the service account it
# runs as (iam.tf), secrets the Stripe secrets it mounts (secrets.tf): only
# the functions that call Stripe hold its key.
locals {
  functions = {
    user = {
      entry_point = "User"
      description = "Signed-in user API: plans, account, API keys, usage."
      public      = true
      memory      = "256Mi"
      cpu         = "1"
      concurrency = 20
      timeout     = 30
      account     = "user"
      secrets     = []
      env         = {}
    }
    checkout = {
      entry_point = "Checkout"
      description = "Starts a Stripe Checkout session."
      public      = true
      memory      = "256Mi"
      cpu         = null
      concurrency = 1
      timeout     = 30
      account     = "functions"
      secrets     = ["STRIPE_SECRET_KEY"]
      env         = {}
    }
    cancel = {
      entry_point = "Cancel"
      description = "Cancels the user's subscriptions at once and moves the account back to Free."
      public      = true
      memory      = "256Mi"
      cpu         = null
      concurrency = 1
      timeout     = 30
      account     = "functions"
      secrets     = ["STRIPE_SECRET_KEY"]
      env         = {}
    }
    portal = {
      entry_point = "Portal"
      description = "Opens the Stripe customer portal."
      public      = true
      memory      = "256Mi"
      cpu         = null
      concurrency = 1
      timeout     = 30
      account     = "functions"
      secrets     = ["STRIPE_SECRET_KEY"]
      env         = {}
    }
    webhook = {
      entry_point = "Webhook"
      description = "Applies Stripe events; checks the Stripe signature."
      public      = true
      memory      = "256Mi"
      cpu         = "1"
      concurrency = 10
      timeout     = 60
      account     = "functions"
      secrets     = ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]
      env         = {}
    }
    meter = {
      entry_point = "Meter"
      description = "The metered API: debits credits by API key."
      public      = true
      memory      = "512Mi"
      cpu         = "1"
      concurrency = 80
      timeout     = 30
      account     = "meter"
      secrets     = []
      env         = {}
    }
    operator = {
      entry_point = "Operator"
      description = "Operator API: /api/verify and credit reservations, for the operator's backends (operator secret)."
      public      = true
      memory      = "256Mi"
      cpu         = "1"
      concurrency = 40
      timeout     = 30
      account     = "functions"
      secrets     = ["PAYMETER_OPERATOR_SECRET"]
      env         = {}
    }
    task-grant = {
      entry_point = "TaskGrant"
      description = "Cloud Tasks handler: grants Free credits and schedules the next grant."
      public      = false
      memory      = "256Mi"
      cpu         = null
      concurrency = 1
      timeout     = 60
      account     = "functions"
      secrets     = []
      env         = {}
    }
    task-reconcile = {
      entry_point = "TaskReconcile"
      description = "Cloud Scheduler handler: the daily sweep."
      public      = false
      memory      = "256Mi"
      cpu         = "1"
      concurrency = 1
      timeout     = 300
      account     = "functions"
      secrets     = []
      env         = {}
    }
    task-notify = {
      entry_point = "TaskNotify"
      description = "Cloud Tasks handler: delivers one notice (email over SMTP, the operator's signed webhook)."
      public      = false
      memory      = "256Mi"
      cpu         = null
      concurrency = 1
      timeout     = 120
      account     = "functions"
      # The notices' secrets, once the deployment uses them (secrets.tf).
      secrets = keys(local.notify_secrets_mounted)
      env     = {}
    }
  }

  # The cloudfunctions.net URL of each function, known before it exists
  # (the Stripe webhook endpoint is registered with it before the first
  # deploy).
  function_url = { for name in keys(local.functions) : name => "https://${var.region}-${var.project_id}.cloudfunctions.net/${name}" }

  # The deterministic run.app URL of each function's Cloud Run service,
  # https://SERVICE-PROJECT_NUMBER.REGION.run.app, also known before it
  # exists. Cloud Tasks and Cloud Scheduler call the task handlers there,
  # with OIDC tokens for that URL: Cloud Run's invoker check accepts the
  # service's run.app URL as the audience, as the provider's example of a
  # 2nd gen function behind Cloud Scheduler does.
  run_url = { for name in keys(local.functions) : name => "https://${name}-${data.google_project.main.number}.${var.region}.run.app" }

  # The identity each function runs as (iam.tf).
  runtime_account = {
    functions = google_service_account.functions.email
    user      = google_service_account.user.email
    meter     = google_service_account.meter.email
  }

  public_url = coalesce(var.public_url, google_firebase_hosting_site.web.default_url)

  # The environment of every function (config/ reads it); secrets are mounted
  # separately from Secret Manager.
  function_env = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    PUBLIC_URL             = local.public_url
    CORS_ORIGINS           = join(",", distinct(concat([local.public_url], var.extra_cors_origins)))
    METER_COSTS            = join(",", [for path, cost in var.meter_costs : "${path}=${cost}"])
    METER_UPSTREAMS        = join(",", [for prefix, up in var.meter_upstreams : "${prefix}=${up.url}"])
    METER_UPSTREAM_TIMEOUT = var.meter_upstream_timeout
    METER_CHARGE_ON        = var.meter_charge_on
    TASKS_QUEUE            = "projects/${var.project_id}/locations/${google_cloud_tasks_queue.grants.location}/queues/${google_cloud_tasks_queue.grants.name}"
    TASKS_GRANT_URL        = local.run_url["task-grant"]
    TASKS_AUDIENCE         = local.run_url["task-grant"]
    TASKS_SERVICE_ACCOUNT  = google_service_account.tasks.email
    # Cloud Scheduler's tokens are for TaskReconcile's own URL (Cloud Run
    # admits only tokens for the URL called); every function's init wires
    # both task handlers, so every function needs it.
    TASKS_RECONCILE_URL = local.run_url["task-reconcile"]
    # Notices: every function that changes accounts schedules their delivery
    # on the notices queue, with OIDC tokens for TaskNotify's run.app URL.
    TASKS_NOTIFY_URL     = local.run_url["task-notify"]
    TASKS_NOTIFY_QUEUE   = "projects/${var.project_id}/locations/${google_cloud_tasks_queue.notices.location}/queues/${google_cloud_tasks_queue.notices.name}"
    MAIL_FROM            = var.mail_from
    OPERATOR_WEBHOOK_URL = var.operator_webhook_url
    LOG_FORMAT           = var.log_format
    METER_MODE           = var.meter_mode
    LEASE_TTL            = var.lease_ttl
    LEASE_IDLE           = var.lease_idle
    LEASE_MAX_BLOCK      = tostring(var.lease_max_block)
    KEY_CACHE_TTL        = var.key_cache_ttl
    # Free credits only for verified emails, against throwaway sign-ups.
    REQUIRE_VERIFIED_EMAIL = tostring(var.require_verified_email)
  }

  source_zip = startswith(var.source_zip, "/") ? var.source_zip : "${path.module}/${var.source_zip}"
}

data "google_project" "main" {
  project_id = var.project_id
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-paymeter-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # it holds only build inputs

  depends_on = [google_project_service.enabled]
}

# Named by the zip's MD5: a new zip is a new object, and the new object name
# redeploys every function; an unchanged zip changes nothing.
resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "source-${filemd5(local.source_zip)}.zip"
  source = local.source_zip

  # The functions move to the new object before the old one goes: deleting
  # it first would leave them pointing at nothing mid-apply.
  lifecycle {
    create_before_destroy = true
  }
}

# The images Cloud Build makes for the functions. gcf-artifacts is the
# repository Cloud Functions would create by itself; creating it here adds
# a cleanup policy, so that every deploy's eight images do not pile up
# (storage is billed). A project that already has it: see README.md.
resource "google_artifact_registry_repository" "gcf_artifacts" {
  project       = var.project_id
  location      = var.region
  repository_id = "gcf-artifacts"
  description   = "Images of the Paymeter functions (Cloud Functions builds)."
  format        = "DOCKER"

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.artifact_keep_count
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days; keep-recent keeps the newest anyway
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = each.key
  description = each.value.description

  build_config {
    runtime           = var.go_runtime
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.gcf_artifacts.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    max_instance_request_concurrency = each.value.concurrency
    timeout_seconds                  = each.value.timeout
    min_instance_count               = var.min_instance_count
    max_instance_count               = var.max_instance_count
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = local.runtime_account[each.value.account]
    environment_variables            = merge(local.function_env, each.value.env)

    # Pinned to the secret's newest version number, read at plan time: a
    # new version changes the number, so the next apply rolls every
    # function that mounts it onto the new value.
    dynamic "secret_environment_variables" {
      for_each = toset(each.value.secrets)
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = local.secret_ids[secret_environment_variables.key]
        version    = local.secret_versions[secret_environment_variables.key]
      }
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.functions_firestore,
    google_project_iam_member.functions_auth_viewer,
    google_project_iam_member.user,
    google_project_iam_member.meter_firestore,
    google_secret_manager_secret_iam_member.functions_read_stripe,
    google_secret_manager_secret_iam_member.functions_read_notify,
  ]
}
