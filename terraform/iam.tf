# Five service accounts, each with only what its job needs. Each is created
# after the IAM API is on (a fresh project answers 403 before), and the build
# account's roles are granted in deploy.sh's first step, minutes before the
# first build, so that IAM has propagated when Cloud Build uses them.

# The identity of checkout, cancel, portal, webhook and the task handlers:
# Firestore, the grant queue, the Stripe secrets.
resource "google_service_account" "functions" {
  project      = var.project_id
  account_id   = "paymeter-functions"
  display_name = "Paymeter functions"
  description  = "Runs the Paymeter Cloud Functions that call Stripe or run the grant chain."

  depends_on = [google_project_service.enabled]
}

# The identity of the user API: Firestore, ID token checks, and the first
# grant task of a new account; it cannot read the Stripe secrets.
resource "google_service_account" "user" {
  project      = var.project_id
  account_id   = "paymeter-user"
  display_name = "Paymeter user API"
  description  = "Runs the public user function: Firestore, Auth lookups, the first grant task. No Stripe secret."

  depends_on = [google_project_service.enabled]
}

# The identity of the metered API: Firestore, and the notices queue for the
# notices a call makes.
resource "google_service_account" "meter" {
  project      = var.project_id
  account_id   = "paymeter-meter"
  display_name = "Paymeter metered API"
  description  = "Runs the public meter function: Firestore and the notices queue. No Stripe secret."

  depends_on = [google_project_service.enabled]
}

# The identity in the OIDC tokens that Cloud Tasks and Cloud Scheduler send
# to the task handlers; it may invoke those two functions and nothing else.
resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "paymeter-tasks"
  display_name = "Paymeter task caller"
  description  = "Signs the OIDC tokens of Cloud Tasks and Cloud Scheduler calls to TaskGrant, TaskReconcile and TaskNotify."

  depends_on = [google_project_service.enabled]
}

# The identity Cloud Build uses to build the function source, instead of
# the broad default compute account.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "paymeter-build"
  display_name = "Paymeter function builds"
  description  = "Builds the Paymeter function source with Cloud Build."

  depends_on = [google_project_service.enabled]
}

# Functions: read and write Firestore (accounts, ledger, keys, events).
resource "google_project_iam_member" "functions_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.functions.member
}

# Functions: look up the user behind an ID token. firebaseauth/ verifies
# tokens with VerifyIDTokenAndCheckRevoked, which reads the user record
# (firebaseauth.users.get) to refuse revoked sessions and disabled users.
resource "google_project_iam_member" "functions_auth_viewer" {
  project = var.project_id
  role    = "roles/firebaseauth.viewer"
  member  = google_service_account.functions.member
}

# User API: Firestore, and the user record behind an ID token (as above).
resource "google_project_iam_member" "user" {
  for_each = toset(["roles/datastore.user", "roles/firebaseauth.viewer"])

  project = var.project_id
  role    = each.key
  member  = google_service_account.user.member
}

# Metered API: Firestore (keys, accounts, usage).
resource "google_project_iam_member" "meter_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.meter.member
}

# Functions and the user API: add tasks to the grant queue, and only that
# queue (the user API enqueues a new account's next grant; the grant chain
# and the webhook the rest).
resource "google_cloud_tasks_queue_iam_member" "functions_enqueue" {
  for_each = { functions = google_service_account.functions.member, user = google_service_account.user.member }

  project  = var.project_id
  location = google_cloud_tasks_queue.grants.location
  name     = google_cloud_tasks_queue.grants.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# Every function that changes accounts (the metered API included: a call
# that crosses the low-balance threshold, or the first 402) adds the delivery
# tasks of the notices it makes to the notices queue, and only that queue.
resource "google_cloud_tasks_queue_iam_member" "enqueue_notices" {
  for_each = {
    functions = google_service_account.functions.member
    user      = google_service_account.user.member
    meter     = google_service_account.meter.member
  }

  project  = var.project_id
  location = google_cloud_tasks_queue.notices.location
  name     = google_cloud_tasks_queue.notices.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# Functions, the user API and the metered API: name the task caller in the
# OIDC token of each task they create (Cloud Tasks requires actAs on that
# account, and on no other). The metered API may enqueue on the notices
# queue only, so it can create notice tasks and nothing else.
resource "google_service_account_iam_member" "functions_act_as_tasks" {
  for_each = {
    functions = google_service_account.functions.member
    user      = google_service_account.user.member
    meter     = google_service_account.meter.member
  }

  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Builds: the roles Google lists for a build service account of functions
# (https://cloud.google.com/run/docs/configuring/services/build-service-account):
# write build logs, push images, and read and write Storage objects (the
# function source, and the build's own objects).
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectAdmin",
  ])

  project = var.project_id
  role    = each.key
  member  = google_service_account.build.member
}

# Who may invoke which function. A 2nd gen function is a Cloud Run service of
# the same name, and Cloud Run checks roles/run.invoker on every request:
# the public functions admit anyone (they check Firebase ID tokens, API keys or
# Stripe signatures themselves); the task handlers admit only the task caller.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, fn in local.functions : name => fn if fn.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "tasks" {
  for_each = { for name, fn in local.functions : name => fn if !fn.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks.member
}

# The grants above became one per account; the functions' ones keep their place.
moved {
  from = google_cloud_tasks_queue_iam_member.functions_enqueue
  to   = google_cloud_tasks_queue_iam_member.functions_enqueue["functions"]
}

moved {
  from = google_service_account_iam_member.functions_act_as_tasks
  to   = google_service_account_iam_member.functions_act_as_tasks["functions"]
}

# The meter forwards to the operator's Cloud Run services (meter_upstreams)
# with a Google ID token of its own account: each upstream that names its
# service admits that account, and no one else needs to.
resource "google_cloud_run_v2_service_iam_member" "upstream" {
  for_each = { for prefix, up in var.meter_upstreams : prefix => up if up.service != null }

  project  = coalesce(each.value.project, var.project_id)
  location = coalesce(each.value.location, var.region)
  name     = each.value.service
  role     = "roles/run.invoker"
  member   = google_service_account.meter.member
}
