# Inputs of the byok-keeper Terraform module. Defaults mirror deploy/functions.yml (the source
# of truth); tests/unit/test_deploy_artefacts.py fails if they drift apart.

variable "code_zip" {
  description = "The FC code package built by `make package` (dist/byok-keeper-fc.zip)."
  type        = string
  default     = "../../dist/byok-keeper-fc.zip"
}

variable "function_prefix" {
  description = "Functions are named <prefix>-sweep, <prefix>-reimport and <prefix>-events."
  type        = string
  default     = "byok-keeper"
}

variable "role_name" {
  description = "RAM role the functions run as (created here, with deploy/ram-policy.json)."
  type        = string
  default     = "byok-keeper"
}

variable "kms_endpoint" {
  description = "KMS endpoint with scheme; empty = the regional endpoint."
  type        = string
  default     = ""
}

variable "fc_endpoint" {
  description = "FC endpoint for the async fan-out; empty = <account-id>.<region>.fc.aliyuncs.com."
  type        = string
  default     = ""
}

variable "vault_uri" {
  description = "Where sealed envelopes live."
  type        = string
  default     = "kms-secrets://byok-keeper/envelopes"
}

variable "seal_kms_key_id" {
  description = "Symmetric KMS key that seals envelope data keys."
  type        = string
  default     = ""
}

variable "seal_key_file" {
  description = "Local seal key file; leave empty in the cloud."
  type        = string
  default     = ""
}

variable "dispatch" {
  description = "inline = the sweep restores keys itself; fc-async = async reimport batches."
  type        = string
  default     = "inline"
}

variable "dispatch_batch" {
  description = "Concurrent async invocations the sweep sends at once (fc-async)."
  type        = string
  default     = "50"
}

variable "inline_keys" {
  description = "fc-async: up to this many due keys the sweep restores itself (no reimport invocation); above it, it restores its budget's part and sends the rest in batches (0 sends them all)."
  type        = string
  default     = "20"
}

variable "schedule" {
  description = "Sweep timer, 6-field cron in UTC (seconds first), or @every 15m. Every 6 hours by default (deletions arrive as events); \"0 0/15 * * * *\" sweeps as often as before events."
  type        = string
  default     = "0 0 0/6 * * *"
}

variable "events_concurrency" {
  description = "Reserved concurrency of the events function; each instance gets the budgets divided by it."
  type        = number
  default     = 2
}

variable "create_eventbridge_service_linked_role" {
  description = "Create EventBridge's service-linked role AliyunServiceRoleForEventBridgeSendToFC (false when the account already has it)."
  type        = bool
  default     = true
}

variable "read_qps" {
  description = "Read budget of the whole deployment (the account quota is 50, shared)."
  type        = string
  default     = "25"
}

variable "write_qps" {
  description = "Write budget of the whole deployment (the account quota is 30, shared)."
  type        = string
  default     = "15"
}

variable "runtime" {
  description = "FC 3.0 runtime of every function: python3.12, or python3.10 where 3.12 is still preview (package with deploy/package.py --python-version 3.10)."
  type        = string
  default     = "python3.12"
  validation {
    condition     = contains(["python3.12", "python3.10"], var.runtime)
    error_message = "runtime must be python3.12 or python3.10."
  }
}

variable "sweep_concurrency" {
  description = "Reserved concurrency of the sweep (the timer's and an on-call sweep at once); each instance gets sweep_budget_percent of the budgets divided by it."
  type        = number
  default     = 2
}

variable "sweep_budget_percent" {
  description = "Percent of the budgets the sweep's instances split (the three percents add up to at most 100; deploy/README.md, Budgets)."
  type        = number
  default     = 40
}

variable "reimport_budget_percent" {
  description = "Percent of the budgets the reimport instances split."
  type        = number
  default     = 40
}

variable "events_budget_percent" {
  description = "Percent of the budgets the events function's instances split."
  type        = number
  default     = 20
}

variable "reimport_concurrency" {
  description = "Reserved concurrency of reimport; each instance gets the budgets divided by it."
  type        = number
  default     = 5
}

variable "async_retries" {
  description = "FC retries of a failed async reimport or event (0-8) before OnFailure."
  type        = number
  default     = 3
}

variable "renew_before" {
  description = "Renew material expiring within this window."
  type        = string
  default     = "7d"
}

variable "kms_instance_ids" {
  description = "Comma-separated KMS instance ids holding the managed keys (informational)."
  type        = string
  default     = ""
}

variable "failure_topic" {
  description = "MNS topic receiving reimport invocations that failed after all retries."
  type        = string
  default     = "byok-keeper-failures"
}

variable "log_project" {
  description = "Log Service project for the functions' logs."
  type        = string
  default     = "byok-keeper"
}

variable "log_store" {
  description = "Log Service logstore for the functions' logs."
  type        = string
  default     = "byok-keeper"
}

variable "vpc_id" {
  description = "VPC to run in (empty = no VPC)."
  type        = string
  default     = ""
}

variable "vswitch_ids" {
  description = "vSwitch ids in that VPC."
  type        = list(string)
  default     = []
}

variable "security_group_id" {
  description = "Security group in that VPC."
  type        = string
  default     = ""
}

variable "config_file" {
  description = "Settings file with [[targets]] (issue 16); empty = no targets. The package must carry it: build it with `python deploy/package.py --config FILE` (checked, shipped as byok-keeper.toml, BYOK_CONFIG of sweep and reimport)."
  type        = string
  default     = ""
}

variable "target_role_arns" {
  description = "The role_arn of every target in config_file: the role's sts:AssumeRole resources (none = no AssumeRole grant). `deploy.py --config FILE --plan` prints them."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.target_role_arns : can(regex("^acs:ram::[0-9]{16}:role/[A-Za-z0-9.@_-]{1,64}$", a))])
    error_message = "Each target_role_arns entry is acs:ram::<16-digit account>:role/<name>."
  }
}
