# Firebase on the same project: the web app (its config is what the browser
# uses to sign in), the Hosting site that serves web/ and rewrites /api/* to
# the functions (firebase.json), and sign-in with email and password or Google.
locals {
  hosting_site_id = coalesce(var.hosting_site_id, var.project_id)

  authorized_domains = distinct(concat([
    "localhost",
    "${var.project_id}.firebaseapp.com",
    "${var.project_id}.web.app",
    "${local.hosting_site_id}.firebaseapp.com",
    "${local.hosting_site_id}.web.app",
    # The site users open (a custom domain once public_url names one).
    regex("^https?://([^/:]+)", local.public_url)[0],
  ], var.extra_authorized_domains))
}

resource "google_firebase_project" "main" {
  provider = google-beta
  project  = var.project_id

  depends_on = [google_project_service.enabled]
}

resource "google_firebase_web_app" "web" {
  provider        = google-beta
  project         = var.project_id
  display_name    = "Paymeter"
  deletion_policy = "DELETE"

  depends_on = [google_firebase_project.main]
}

data "google_firebase_web_app_config" "web" {
  provider   = google-beta
  project    = var.project_id
  web_app_id = google_firebase_web_app.web.app_id
}

# With the default site_id (the project ID) this adopts the site that Firebase
# provisions for the project rather than creating another; a project's
# default site cannot be deleted, so destroy leaves it be.
resource "google_firebase_hosting_site" "web" {
  provider        = google-beta
  project         = var.project_id
  site_id         = local.hosting_site_id
  app_id          = google_firebase_web_app.web.app_id
  deletion_policy = local.hosting_site_id == var.project_id ? "ABANDON" : "DELETE"
}

# Firebase Auth, configured through Identity Platform (the same service;
# Terraform can only set sign-in providers through it).
resource "google_identity_platform_config" "auth" {
  project            = var.project_id
  authorized_domains = local.authorized_domains

  sign_in {
    allow_duplicate_emails = false

    email {
      enabled           = true
      password_required = true
    }
  }

  depends_on = [google_firebase_project.main]
}

# Google sign-in needs an OAuth client that only the console can create; it
# is switched on once its ID and secret are set (see README.md).
resource "google_identity_platform_default_supported_idp_config" "google" {
  count = var.google_oauth_client_id == "" ? 0 : 1

  project       = var.project_id
  idp_id        = "google.com"
  client_id     = var.google_oauth_client_id
  client_secret = var.google_oauth_client_secret
  enabled       = true

  depends_on = [google_identity_platform_config.auth]
}
