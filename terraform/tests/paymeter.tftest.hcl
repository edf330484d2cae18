# What must hold of the deployment, checked offline with mocked providers
# (terraform/test.sh runs this). Terraform still asks the providers for their
# schemas, so every argument here is checked against the real ones too.

mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      email  = "paymeter-test@paymeter-test.iam.gserviceaccount.com"
      member = "serviceAccount:paymeter-test@paymeter-test.iam.gserviceaccount.com"
    }
  }

  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  mock_data "google_secret_manager_secret_version" {
    defaults = {
      version = "3"
    }
  }
}

# Each runtime account with an address of its own, so that the checks below
# can tell them apart.
override_resource {
  target = google_service_account.user
  values = {
    email  = "paymeter-user@paymeter-test.iam.gserviceaccount.com"
    member = "serviceAccount:paymeter-user@paymeter-test.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.meter
  values = {
    email  = "paymeter-meter@paymeter-test.iam.gserviceaccount.com"
    member = "serviceAccount:paymeter-meter@paymeter-test.iam.gserviceaccount.com"
  }
}

override_resource {
  target = google_service_account.functions
  values = {
    email  = "paymeter-functions@paymeter-test.iam.gserviceaccount.com"
    member = "serviceAccount:paymeter-functions@paymeter-test.iam.gserviceaccount.com"
  }
}

mock_provider "google-beta" {
  mock_resource "google_firebase_hosting_site" {
    defaults = {
      default_url = "https://paymeter-test.web.app"
    }
  }
}

variables {
  project_id = "paymeter-test"
  # source_zip and firestore_rules_file come from test.sh (TF_VAR_*).
}

run "defaults" {
  command = apply

  assert {
    condition = toset([for fn in google_cloudfunctions2_function.fn : fn.build_config[0].entry_point]) == toset([
      "User", "Checkout", "Cancel", "Portal", "Webhook", "Meter", "Operator", "TaskGrant", "TaskReconcile", "TaskNotify",
    ])
    error_message = "Every entry point that paymeter.go registers (User, Checkout, Cancel, Portal, Webhook, Meter, Operator, TaskGrant, TaskReconcile, TaskNotify) must be deployed, once."
  }

  assert {
    condition     = alltrue([for fn in google_cloudfunctions2_function.fn : fn.build_config[0].runtime == "go126"])
    error_message = "Functions must use the go126 runtime (go.mod requires Go 1.26)."
  }

  assert {
    condition     = length(distinct([for fn in google_cloudfunctions2_function.fn : fn.build_config[0].source[0].storage_source[0].object])) == 1
    error_message = "All functions must be built from the one source zip."
  }

  assert {
    condition     = google_storage_bucket_object.source.name == "source-${filemd5(var.source_zip)}.zip"
    error_message = "The source object must be named by the zip's hash, so a code change redeploys."
  }

  # Public: the user API, the metered API, the webhook (and the other
  # browser-called functions).
  assert {
    condition     = toset(keys(google_cloud_run_v2_service_iam_member.public)) == toset(["user", "checkout", "cancel", "portal", "webhook", "meter", "operator"])
    error_message = "Exactly the user API, checkout, cancel, portal, webhook and meter functions must be public."
  }

  assert {
    condition = alltrue([for name in ["user", "webhook", "meter"] : (
      google_cloud_run_v2_service_iam_member.public[name].member == "allUsers" &&
      google_cloud_run_v2_service_iam_member.public[name].role == "roles/run.invoker" &&
      google_cloud_run_v2_service_iam_member.public[name].name == google_cloudfunctions2_function.fn[name].name
    )])
    error_message = "The webhook, user and meter functions must grant roles/run.invoker to allUsers on their own service."
  }

  # Private: no binding anywhere lets allUsers or allAuthenticatedUsers call a
  # task handler; only the task caller may.
  assert {
    condition = alltrue([
      for binding in concat(values(google_cloud_run_v2_service_iam_member.public), values(google_cloud_run_v2_service_iam_member.tasks)) :
      !(contains(["allUsers", "allAuthenticatedUsers"], binding.member) &&
        contains([google_cloudfunctions2_function.fn["task-grant"].name, google_cloudfunctions2_function.fn["task-reconcile"].name,
      google_cloudfunctions2_function.fn["task-notify"].name], binding.name))
    ])
    error_message = "TaskGrant, TaskReconcile and TaskNotify must not be public."
  }

  assert {
    condition = toset(keys(google_cloud_run_v2_service_iam_member.tasks)) == toset(["task-grant", "task-reconcile", "task-notify"]) && alltrue([
      for name, binding in google_cloud_run_v2_service_iam_member.tasks :
      binding.member == google_service_account.tasks.member && binding.role == "roles/run.invoker" && binding.name == google_cloudfunctions2_function.fn[name].name
    ])
    error_message = "Only the task caller service account may invoke the task handlers."
  }

  # Secrets come from Secret Manager, never from plain environment, and only
  # to the functions that call Stripe, pinned to a version number.
  assert {
    condition = {
      for name, fn in google_cloudfunctions2_function.fn : name => join(",", sort([for s in fn.service_config[0].secret_environment_variables : s.key]))
      } == {
      user           = ""
      checkout       = "STRIPE_SECRET_KEY"
      cancel         = "STRIPE_SECRET_KEY"
      portal         = "STRIPE_SECRET_KEY"
      webhook        = "STRIPE_SECRET_KEY,STRIPE_WEBHOOK_SECRET"
      meter          = ""
      operator       = "PAYMETER_OPERATOR_SECRET"
      task-grant     = ""
      task-reconcile = ""
      task-notify    = ""
    }
    error_message = "Only checkout, cancel and portal (the key) and webhook (key and signing secret) may mount Stripe secrets, and only operator the operator secret."
  }

  assert {
    condition = alltrue(flatten([for fn in google_cloudfunctions2_function.fn : [
      for s in fn.service_config[0].secret_environment_variables :
      s.secret == google_secret_manager_secret.stripe[s.key].secret_id && s.version == "3"
    ]]))
    error_message = "Each mounted secret must be pinned to the number of its newest version (a new version rolls the functions), not latest."
  }

  assert {
    condition = alltrue([for fn in google_cloudfunctions2_function.fn :
    length([for k in keys(fn.service_config[0].environment_variables) : k if startswith(k, "STRIPE_")]) == 0])
    error_message = "No Stripe value may be set as a plain environment variable."
  }

  assert {
    condition = alltrue([for env, binding in google_secret_manager_secret_iam_member.functions_read_stripe :
    binding.member == google_service_account.functions.member && binding.role == "roles/secretmanager.secretAccessor"])
    error_message = "The functions' account must be able to read both Stripe secrets."
  }

  # Nothing bills an idle instance by default.
  assert {
    condition     = alltrue([for fn in google_cloudfunctions2_function.fn : fn.service_config[0].min_instance_count == 0])
    error_message = "min_instance_count must default to 0."
  }

  # Least privilege: the roles the code's calls need, on the project, and no more.
  assert {
    condition = (
      google_project_iam_member.functions_firestore.role == "roles/datastore.user" &&
      google_project_iam_member.functions_auth_viewer.role == "roles/firebaseauth.viewer" &&
      alltrue([for m in [google_project_iam_member.functions_firestore, google_project_iam_member.functions_auth_viewer] : m.member == google_service_account.functions.member]) &&
      toset([for m in google_project_iam_member.user : "${m.role} ${m.member}"]) == toset([
        "roles/datastore.user ${google_service_account.user.member}", "roles/firebaseauth.viewer ${google_service_account.user.member}",
      ]) &&
      google_project_iam_member.meter_firestore.role == "roles/datastore.user" &&
      google_project_iam_member.meter_firestore.member == google_service_account.meter.member
    )
    error_message = "Firestore for every runtime account, Auth user lookups (firebaseauth.viewer) for the functions' and the user API's accounts, nothing more on the project."
  }

  # Only the functions' and the user API's accounts may enqueue grant tasks
  # and name the task caller in them; the metered API cannot.
  assert {
    condition = (
      toset([for m in google_cloud_tasks_queue_iam_member.functions_enqueue : "${m.role} ${m.member}"]) == toset([
        "roles/cloudtasks.enqueuer ${google_service_account.functions.member}", "roles/cloudtasks.enqueuer ${google_service_account.user.member}",
      ]) &&
      toset([for m in google_service_account_iam_member.functions_act_as_tasks : "${m.role} ${m.member}"]) == toset([
        "roles/iam.serviceAccountUser ${google_service_account.functions.member}", "roles/iam.serviceAccountUser ${google_service_account.user.member}",
        "roles/iam.serviceAccountUser ${google_service_account.meter.member}",
      ]) &&
      toset([for m in google_cloud_tasks_queue_iam_member.enqueue_notices : "${m.role} ${m.member} ${m.name}"]) == toset([
        for a in [google_service_account.functions.member, google_service_account.user.member, google_service_account.meter.member] :
        "roles/cloudtasks.enqueuer ${a} ${google_cloud_tasks_queue.notices.name}"
      ])
    )
    error_message = "Enqueue on the grant queue: the functions' and the user API's accounts only; on the notices queue and actAs on the task caller: those and the metered API's."
  }

  assert {
    condition = alltrue([for env, binding in google_secret_manager_secret_iam_member.functions_read_stripe :
    binding.member == google_service_account.functions.member && binding.role == "roles/secretmanager.secretAccessor"])
    error_message = "Only the functions' account may read the Stripe secrets (not the user or meter accounts)."
  }

  assert {
    condition = {
      for name, fn in google_cloudfunctions2_function.fn : name => fn.service_config[0].service_account_email
      } == {
      user           = google_service_account.user.email
      checkout       = google_service_account.functions.email
      cancel         = google_service_account.functions.email
      portal         = google_service_account.functions.email
      webhook        = google_service_account.functions.email
      meter          = google_service_account.meter.email
      operator       = google_service_account.functions.email
      task-grant     = google_service_account.functions.email
      task-reconcile = google_service_account.functions.email
      task-notify    = google_service_account.functions.email
    }
    error_message = "user and meter must run as their own accounts, the others as the functions' account."
  }

  # Builds: the roles Google lists for a build service account, granted
  # before any function is built.
  assert {
    condition = toset([for m in google_project_iam_member.build : m.role if m.member == google_service_account.build.member]) == toset([
      "roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectAdmin",
    ])
    error_message = "The build account needs Artifact Registry Writer, Logs Writer and Storage Object Admin."
  }

  assert {
    condition = alltrue([for fn in google_cloudfunctions2_function.fn : fn.build_config[0].docker_repository == google_artifact_registry_repository.gcf_artifacts.id]) && (
      google_artifact_registry_repository.gcf_artifacts.repository_id == "gcf-artifacts" &&
      contains([for p in google_artifact_registry_repository.gcf_artifacts.cleanup_policies : p.action], "DELETE") &&
      contains([for p in google_artifact_registry_repository.gcf_artifacts.cleanup_policies : p.action], "KEEP")
    )
    error_message = "The functions' images must go to gcf-artifacts, with a cleanup policy that keeps the newest and deletes the rest."
  }

  assert {
    condition     = contains(google_identity_platform_config.auth.authorized_domains, "paymeter-test.web.app")
    error_message = "The site users open (public_url's host) must be an authorized sign-in domain."
  }

  # Tasks: the grant chain is told where to send tasks and as whom.
  assert {
    condition = alltrue([for fn in google_cloudfunctions2_function.fn : (
      fn.service_config[0].environment_variables["TASKS_GRANT_URL"] == "https://task-grant-123456789012.europe-west2.run.app" &&
      fn.service_config[0].environment_variables["TASKS_AUDIENCE"] == fn.service_config[0].environment_variables["TASKS_GRANT_URL"] &&
      fn.service_config[0].environment_variables["TASKS_SERVICE_ACCOUNT"] == google_service_account.tasks.email &&
      fn.service_config[0].environment_variables["TASKS_RECONCILE_URL"] == "https://task-reconcile-123456789012.europe-west2.run.app" &&
      fn.service_config[0].environment_variables["TASKS_QUEUE"] == "projects/paymeter-test/locations/europe-west2/queues/paymeter-grants" &&
      fn.service_config[0].environment_variables["PUBLIC_URL"] == "https://paymeter-test.web.app" &&
      fn.service_config[0].environment_variables["GOOGLE_CLOUD_PROJECT"] == "paymeter-test"
    )])
    error_message = "Every function must get TASKS_* (the task handlers' deterministic run.app URLs, the audiences Cloud Run admits), PUBLIC_URL and GOOGLE_CLOUD_PROJECT from the deployment (every init wires both task handlers)."
  }

  # Every setting config/ reads in production is set; the dev-only ones are not.
  assert {
    condition = alltrue([for fn in google_cloudfunctions2_function.fn : (
      length(setsubtract([
        "GOOGLE_CLOUD_PROJECT", "PUBLIC_URL", "CORS_ORIGINS", "METER_COSTS", "LOG_FORMAT", "TASKS_QUEUE",
        "TASKS_GRANT_URL", "TASKS_SERVICE_ACCOUNT", "TASKS_AUDIENCE", "TASKS_RECONCILE_URL",
      ], keys(fn.service_config[0].environment_variables))) == 0 &&
      length(setintersection(["TASKS_SECRET", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"], keys(fn.service_config[0].environment_variables))) == 0 &&
      fn.service_config[0].environment_variables["CORS_ORIGINS"] == "https://paymeter-test.web.app" &&
      fn.service_config[0].environment_variables["METER_COSTS"] == "/api/meter=1" &&
      fn.service_config[0].environment_variables["LOG_FORMAT"] == "json" &&
      fn.service_config[0].environment_variables["REQUIRE_VERIFIED_EMAIL"] == "true"
    )])
    error_message = "Every function must get the production settings config/ reads (REQUIRE_VERIFIED_EMAIL on), and none of the local-only ones (TASKS_SECRET, emulator hosts)."
  }

  assert {
    condition     = google_cloud_tasks_queue.grants.retry_config[0].max_attempts > 1 && google_cloud_tasks_queue.grants.retry_config[0].max_retry_duration != "0s"
    error_message = "The grant queue must retry failed grants."
  }

  assert {
    condition = google_cloud_tasks_queue.notices.retry_config[0].max_retry_duration == "259200s" && alltrue([
      for fn in google_cloudfunctions2_function.fn :
      fn.service_config[0].environment_variables["TASKS_NOTIFY_URL"] == "https://task-notify-123456789012.europe-west2.run.app" &&
      fn.service_config[0].environment_variables["TASKS_NOTIFY_QUEUE"] == "projects/paymeter-test/locations/europe-west2/queues/paymeter-notices"
    ])
    error_message = "Notices go to their own queue, retried for three days, delivered by task-notify."
  }

  assert {
    condition = toset(keys(google_secret_manager_secret.notify)) == toset(["SMTP_URL", "OPERATOR_WEBHOOK_SECRET"]) && alltrue([
      for b in google_secret_manager_secret_iam_member.functions_read_notify :
    b.member == google_service_account.functions.member && b.role == "roles/secretmanager.secretAccessor"])
    error_message = "The SMTP URL and the operator webhook secret live in Secret Manager, readable by the functions."
  }

  assert {
    condition = (
      google_cloud_scheduler_job.reconcile.http_target[0].uri == "https://task-reconcile-123456789012.europe-west2.run.app" &&
      google_cloud_scheduler_job.reconcile.http_target[0].oidc_token[0].service_account_email == google_service_account.tasks.email &&
      google_cloud_scheduler_job.reconcile.http_target[0].oidc_token[0].audience ==
      google_cloudfunctions2_function.fn["task-reconcile"].service_config[0].environment_variables["TASKS_RECONCILE_URL"]
    )
    error_message = "The daily job must call TaskReconcile with an OIDC token of the task caller, for the audience TaskReconcile checks."
  }

  # Firestore: the reconcile query's index and the TTL on processed events.
  assert {
    condition = (
      google_firestore_index.accounts_due_grants.collection == "accounts" &&
      [for f in google_firestore_index.accounts_due_grants.fields : "${f.field_path}:${f.order}"] == ["plan:ASCENDING", "nextGrantAt:ASCENDING"]
    )
    error_message = "accounts needs the (plan ASC, nextGrantAt ASC) index for the reconcile query."
  }

  assert {
    condition = (
      google_firestore_field.stripe_events_ttl.collection == "stripeEvents" &&
      google_firestore_field.stripe_events_ttl.field == "expireAt" &&
      length(google_firestore_field.stripe_events_ttl.ttl_config) == 1
    )
    error_message = "stripeEvents.expireAt must be a TTL field."
  }

  assert {
    condition = (
      google_firestore_field.api_keys_ttl.collection == "apiKeys" &&
      google_firestore_field.api_keys_ttl.field == "expireAt" &&
      length(google_firestore_field.api_keys_ttl.ttl_config) == 1
    )
    error_message = "apiKeys.expireAt must be a TTL field, so that revoked keys are deleted."
  }

  assert {
    condition     = google_firestore_database.main.type == "FIRESTORE_NATIVE" && google_firestore_database.main.delete_protection_state == "DELETE_PROTECTION_ENABLED"
    error_message = "Firestore must be in Native mode and protected from deletion by default."
  }

  # Sign-in: email and password on, Google off until an OAuth client is given.
  assert {
    condition     = google_identity_platform_config.auth.sign_in[0].email[0].enabled && length(google_identity_platform_default_supported_idp_config.google) == 0
    error_message = "Email/password sign-in must be on, and Google sign-in off without an OAuth client."
  }

  assert {
    condition     = output.webhook_url == "https://europe-west2-paymeter-test.cloudfunctions.net/webhook" && length(output.function_urls) == 10
    error_message = "Outputs must give the webhook URL and every function URL."
  }

  assert {
    condition     = strcontains(output.web_build_env, "export VITE_FIREBASE_PROJECT_ID='paymeter-test'\n") && strcontains(output.web_build_env, "export VITE_FIREBASE_AUTH_DOMAIN='paymeter-test.web.app'\n")
    error_message = "web_build_env must export the web app's Firebase settings."
  }
}

# Hosting (firebase.json) sends the contract's API paths to the functions
# deployed here: each functionId is a public function of this configuration
# in var.region's default, the task handlers are unreachable through the
# site, and everything else falls back to the web app.
run "hosting_rewrites_match_the_functions" {
  command = plan

  assert {
    condition = alltrue([for r in jsondecode(file("${path.module}/../firebase.json")).hosting.rewrites :
      contains(keys(google_cloud_run_v2_service_iam_member.public), r.function.functionId) && r.function.region == var.region
    if can(r.function)])
    error_message = "Every functionId in firebase.json must name a public function of local.functions (functions.tf), in the default region."
  }

  assert {
    condition = {
      for r in jsondecode(file("${path.module}/../firebase.json")).hosting.rewrites : r.source => r.function.functionId if can(r.function)
      } == {
      "/api/plans"                  = "user"
      "/api/user"                   = "user"
      "/api/keys"                   = "user"
      "/api/keys/**"                = "user"
      "/api/keys/**/roll"           = "user"
      "/api/usage"                  = "user"
      "/api/ledger"                 = "user"
      "/api/notifications"          = "user"
      "/api/checkout"               = "checkout"
      "/api/cancel"                 = "cancel"
      "/api/portal"                 = "portal"
      "/api/stripe/webhook"         = "webhook"
      "/api/meter"                  = "meter"
      "/api/verify"                 = "operator"
      "/api/reservations"           = "operator"
      "/api/reservations/**"        = "operator"
      "/api/reservations/**/settle" = "operator"
    }
    error_message = "firebase.json must rewrite exactly the contract's public API paths to their functions (and no task handler path)."
  }

  assert {
    condition = alltrue([for metered in keys(var.meter_costs) : contains([
      for r in jsondecode(file("${path.module}/../firebase.json")).hosting.rewrites : r.source if try(r.function.functionId, "") == "meter"
    ], metered)])
    error_message = "Every metered path in meter_costs needs a firebase.json rewrite to the meter function."
  }

  assert {
    condition     = jsondecode(file("${path.module}/../firebase.json")).hosting.rewrites[length(jsondecode(file("${path.module}/../firebase.json")).hosting.rewrites) - 1] == { source = "**", destination = "/index.html" }
    error_message = "The last rewrite must send every other path to the web app (** -> /index.html)."
  }
}

run "warm_instances_are_opt_in" {
  command = plan

  variables {
    min_instance_count = 1
  }

  assert {
    condition     = alltrue([for fn in google_cloudfunctions2_function.fn : fn.service_config[0].min_instance_count == 1])
    error_message = "min_instance_count must reach every function."
  }
}

run "google_sign_in_with_an_oauth_client" {
  command = plan

  variables {
    google_oauth_client_id     = "123-abc.apps.googleusercontent.com"
    google_oauth_client_secret = "not-a-secret"
  }

  assert {
    condition     = google_identity_platform_default_supported_idp_config.google[0].idp_id == "google.com" && google_identity_platform_default_supported_idp_config.google[0].enabled
    error_message = "Setting an OAuth client must enable Google sign-in."
  }
}

run "rejects_negative_min_instances" {
  command = plan

  variables {
    min_instance_count = -1
  }

  expect_failures = [var.min_instance_count]
}

# The notices' secrets are mounted once the deployment uses them.
run "notice_secrets_mount_when_used" {
  command = plan

  variables {
    smtp_enabled         = true
    operator_webhook_url = "https://ops.example.com/paymeter"
    mail_from            = "Paymeter <billing@example.com>"
  }

  assert {
    condition = alltrue([for name, fn in google_cloudfunctions2_function.fn :
      (name != "task-notify" || toset([for s in fn.service_config[0].secret_environment_variables : "${s.key}=${s.secret}@${s.version}"]) == toset(["SMTP_URL=smtp-url@3", "OPERATOR_WEBHOOK_SECRET=operator-webhook-secret@3"])) &&
      (name == "task-notify" || length(setintersection(["SMTP_URL", "OPERATOR_WEBHOOK_SECRET"], [for s in fn.service_config[0].secret_environment_variables : s.key])) == 0) &&
      fn.service_config[0].environment_variables["OPERATOR_WEBHOOK_URL"] == "https://ops.example.com/paymeter" &&
      fn.service_config[0].environment_variables["MAIL_FROM"] == "Paymeter <billing@example.com>"
    ])
    error_message = "With smtp_enabled and an operator_webhook_url, TaskNotify alone mounts SMTP_URL and OPERATOR_WEBHOOK_SECRET (by version number), and every function gets MAIL_FROM and OPERATOR_WEBHOOK_URL."
  }
}

# Upstreams: the meter is told where they are, and the meter's service
# account may invoke each upstream Cloud Run service named, and only those.
run "upstreams" {
  command = plan

  variables {
    meter_upstreams = {
      "/v1/"          = { url = "https://search-abc-uc.a.run.app", service = "search" }
      "/v2/translate" = { url = "https://translate-xyz-ew.a.run.app", service = "translate", location = "us-central1" }
      "/v3/"          = { url = "https://elsewhere.example.com" }
    }
    meter_charge_on = "2xx"
  }

  assert {
    condition     = google_cloudfunctions2_function.fn["meter"].service_config[0].environment_variables["METER_UPSTREAMS"] == "/v1/=https://search-abc-uc.a.run.app,/v2/translate=https://translate-xyz-ew.a.run.app,/v3/=https://elsewhere.example.com"
    error_message = "METER_UPSTREAMS must list every prefix=url of meter_upstreams."
  }

  assert {
    condition     = google_cloudfunctions2_function.fn["meter"].service_config[0].environment_variables["METER_CHARGE_ON"] == "2xx"
    error_message = "METER_CHARGE_ON must come from meter_charge_on."
  }

  assert {
    condition = (toset(keys(google_cloud_run_v2_service_iam_member.upstream)) == toset(["/v1/", "/v2/translate"]) &&
      google_cloud_run_v2_service_iam_member.upstream["/v1/"].name == "search" &&
      google_cloud_run_v2_service_iam_member.upstream["/v1/"].location == var.region &&
      google_cloud_run_v2_service_iam_member.upstream["/v2/translate"].location == "us-central1" &&
      alltrue([for b in values(google_cloud_run_v2_service_iam_member.upstream) :
    b.role == "roles/run.invoker" && b.member == google_service_account.meter.member]))
    error_message = "Each upstream that names its Cloud Run service must grant roles/run.invoker to the meter's service account, and nothing else."
  }
}

run "upstream_urls_are_checked" {
  command = plan

  variables {
    meter_upstreams = { "/api/x" = { url = "https://search-abc-uc.a.run.app" } }
  }

  expect_failures = [var.meter_upstreams]
}
