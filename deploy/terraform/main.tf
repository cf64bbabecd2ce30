# byok-keeper on Function Compute 3.0 with the alicloud provider: the RAM role and its policy,
# the sweep, reimport and events functions, the sweep's timer, the events function's two EventBridge
# triggers (ActionTrail KMS calls), async invoke configs and reserved concurrency. Same content as deploy/functions.yml (the source of truth, which
# deploy/deploy.py applies through the FC API) and s.yaml (Serverless Devs).
#
#   make package && cd deploy/terraform && terraform init && terraform apply
#
# Resource and attribute names follow the provider's documentation (website/docs/r/fcv3_*.md,
# ram_role, ram_policy, ram_role_policy_attachment); see deploy/README.md.

terraform {
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      # alicloud_ram_role's role_name and assume_role_policy_document arrived in 1.252.0 (older
      # providers know only name/document); the fcv3 resources in 1.228.0. docs/FIDELITY.md.
      version = ">= 1.252.0"
    }
  }
}

data "alicloud_account" "current" {}

data "alicloud_regions" "current" {
  current = true
}

locals {
  region     = data.alicloud_regions.current.regions[0].id
  account_id = data.alicloud_account.current.id
  runtime    = var.runtime

  environment = {
    BYOK_KMS_ENDPOINT       = var.kms_endpoint
    BYOK_FC_ENDPOINT        = var.fc_endpoint
    BYOK_VAULT              = var.vault_uri
    BYOK_SEAL_KMS_KEY_ID    = var.seal_kms_key_id
    BYOK_SEAL_KEY_FILE      = var.seal_key_file
    BYOK_DISPATCH           = var.dispatch
    BYOK_DISPATCH_BATCH     = var.dispatch_batch
    BYOK_INLINE_KEYS        = var.inline_keys
    BYOK_READ_QPS           = var.read_qps
    BYOK_WRITE_QPS          = var.write_qps
    BYOK_RENEW_BEFORE       = var.renew_before
    BYOK_KMS_INSTANCE_IDS   = var.kms_instance_ids
    BYOK_FC_API             = "3.0"
    BYOK_FC_PREFIX          = var.function_prefix
    ALIBABA_CLOUD_REGION_ID = local.region
    BYOK_ACCOUNT_ID         = local.account_id
  }

  # The events function's EventBridge rules: ActionTrail KMS calls of this account and region,
  # by name; never ImportKeyMaterial (together they name byok_keeper.planning.events.EVENT_NAMES, each
  # once: EventBridge takes at most 5 expressions per pattern field); both documented
  # source/type spellings (docs/FIDELITY.md: disputed).
  event_pattern = {
    source          = ["acs.actiontrail", "acs.kms"]
    type            = ["actiontrail:ActionTrail:ApiCall", "kms:ActionTrail:ApiCall"]
    aliyunaccountid = [local.account_id]
    data = {
      serviceName = ["Kms"]
      acsRegion   = [local.region]
      eventName   = ["DeleteKeyMaterial", "ScheduleKeyDeletion", "DisableKey", "CancelKeyDeletion"]
    }
  }
  tag_event_pattern = {
    source          = ["acs.actiontrail", "acs.kms"]
    type            = ["actiontrail:ActionTrail:ApiCall", "kms:ActionTrail:ApiCall"]
    aliyunaccountid = [local.account_id]
    data = {
      serviceName = ["Kms"]
      acsRegion   = [local.region]
      eventName   = ["TagResource", "UntagResource"]
    }
  }
}

# ---- RAM: the role FC assumes, with exactly deploy/ram-policy.json -------------------------

resource "alicloud_ram_role" "byok_keeper" {
  role_name = var.role_name
  assume_role_policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Action    = "sts:AssumeRole"
      Effect    = "Allow"
      Principal = { Service = ["fc.aliyuncs.com"] }
    }]
  })
  description = "byok-keeper FC functions: re-import identical BYOK material, never rotate"
}

resource "alicloud_ram_policy" "byok_keeper" {
  policy_name = var.role_name
  # As deploy.py renders it: the AssumeTargetRoles statement names exactly var.target_role_arns
  # and is left out without targets (no sts:AssumeRole at all).
  policy_document = jsonencode({
    Version = "1"
    Statement = [
      for s in jsondecode(templatefile("${path.module}/../ram-policy.json", {
        region           = local.region
        account_id       = local.account_id
        seal_kms_key_id  = var.seal_kms_key_id
        log_project      = var.log_project
        log_store        = var.log_store
        function_prefix  = var.function_prefix
        failure_topic    = var.failure_topic
        target_role_arns = join("\",\"", var.target_role_arns)
      })).Statement : s if s.Sid != "AssumeTargetRoles" || length(var.target_role_arns) > 0
    ]
  })
  description = "byok-keeper least privilege (deploy/ram-policy.json)"
}

resource "alicloud_ram_role_policy_attachment" "byok_keeper" {
  role_name   = alicloud_ram_role.byok_keeper.role_name
  policy_name = alicloud_ram_policy.byok_keeper.policy_name
  policy_type = "Custom"
}

# ---- the functions ---------------------------------------------------------------------------

resource "alicloud_fcv3_function" "sweep" {
  function_name   = "${var.function_prefix}-sweep"
  description     = "Timer-triggered sweep - discover, plan, restore (inline) or fan out."
  handler         = "sweep.index.handler"
  runtime         = local.runtime
  memory_size     = 256
  timeout         = 900
  role            = alicloud_ram_role.byok_keeper.arn
  internet_access = true
  code {
    zip_file = filebase64(var.code_zip)
  }
  log_config {
    project  = var.log_project
    logstore = var.log_store
  }
  dynamic "vpc_config" {
    for_each = var.vpc_id == "" ? [] : [1]
    content {
      vpc_id            = var.vpc_id
      vswitch_ids       = var.vswitch_ids
      security_group_id = var.security_group_id
    }
  }
  # The planner renews what would come due before the next run of this schedule.
  environment_variables = merge(local.environment, {
    BYOK_SWEEP_INTERVAL   = tostring(var.schedule)
    BYOK_BUDGET_INSTANCES = tostring(var.sweep_concurrency)
    BYOK_BUDGET_PERCENT   = tostring(var.sweep_budget_percent)
    BYOK_CONFIG           = var.config_file == "" ? "" : "byok-keeper.toml"
  })
  depends_on = [alicloud_ram_role_policy_attachment.byok_keeper]
}

resource "alicloud_fcv3_function" "reimport" {
  function_name   = "${var.function_prefix}-reimport"
  description     = "Re-establish one key (async from the sweep, or invoked by on-call)."
  handler         = "reimport.index.handler"
  runtime         = local.runtime
  memory_size     = 256
  timeout         = 120
  role            = alicloud_ram_role.byok_keeper.arn
  internet_access = true
  code {
    zip_file = filebase64(var.code_zip)
  }
  log_config {
    project  = var.log_project
    logstore = var.log_store
  }
  dynamic "vpc_config" {
    for_each = var.vpc_id == "" ? [] : [1]
    content {
      vpc_id            = var.vpc_id
      vswitch_ids       = var.vswitch_ids
      security_group_id = var.security_group_id
    }
  }
  # Each capped instance takes its slice of the budgets: the fleet stays inside the share.
  environment_variables = merge(local.environment, {
    BYOK_BUDGET_INSTANCES = tostring(var.reimport_concurrency)
    BYOK_BUDGET_PERCENT   = tostring(var.reimport_budget_percent)
    BYOK_CONFIG           = var.config_file == "" ? "" : "byok-keeper.toml"
  })
  depends_on = [alicloud_ram_role_policy_attachment.byok_keeper]
}

resource "alicloud_fcv3_trigger" "schedule" {
  function_name = alicloud_fcv3_function.sweep.function_name
  trigger_name  = "schedule"
  trigger_type  = "timer"
  qualifier     = "LATEST"
  trigger_config = jsonencode({
    cronExpression = var.schedule
    enable         = true
    payload        = "{}"
  })
}

resource "alicloud_fcv3_async_invoke_config" "reimport" {
  function_name                  = alicloud_fcv3_function.reimport.function_name
  max_async_retry_attempts       = var.async_retries
  max_async_event_age_in_seconds = 86400
  destination_config {
    on_failure {
      destination = "acs:mns:${local.region}:${local.account_id}:/topics/${var.failure_topic}/messages"
    }
  }
}

resource "alicloud_fcv3_concurrency_config" "sweep" {
  function_name        = alicloud_fcv3_function.sweep.function_name
  reserved_concurrency = var.sweep_concurrency
}

resource "alicloud_fcv3_concurrency_config" "reimport" {
  function_name        = alicloud_fcv3_function.reimport.function_name
  reserved_concurrency = var.reimport_concurrency
}

# ---- event-driven restore (issue 15) -----------------------------------------------------------

resource "alicloud_fcv3_function" "events" {
  function_name   = "${var.function_prefix}-events"
  description     = "ActionTrail KMS events via EventBridge - look at the named key, restore if due."
  handler         = "events.index.handler"
  runtime         = local.runtime
  memory_size     = 256
  timeout         = 120
  role            = alicloud_ram_role.byok_keeper.arn
  internet_access = true
  code {
    zip_file = filebase64(var.code_zip)
  }
  log_config {
    project  = var.log_project
    logstore = var.log_store
  }
  dynamic "vpc_config" {
    for_each = var.vpc_id == "" ? [] : [1]
    content {
      vpc_id            = var.vpc_id
      vswitch_ids       = var.vswitch_ids
      security_group_id = var.security_group_id
    }
  }
  environment_variables = merge(local.environment, {
    BYOK_BUDGET_INSTANCES = tostring(var.events_concurrency)
    BYOK_BUDGET_PERCENT   = tostring(var.events_budget_percent)
  })
  depends_on = [alicloud_ram_role_policy_attachment.byok_keeper]
}

# EventBridge delivers to FC under this service-linked role (the provider's fc_trigger example).
resource "alicloud_event_bridge_service_linked_role" "send_to_fc" {
  count        = var.create_eventbridge_service_linked_role ? 1 : 0
  product_name = "AliyunServiceRoleForEventBridgeSendToFC"
}

resource "alicloud_fcv3_trigger" "actiontrail" {
  function_name = alicloud_fcv3_function.events.function_name
  trigger_name  = "actiontrail"
  trigger_type  = "eventbridge"
  qualifier     = "LATEST"
  trigger_config = jsonencode({
    triggerEnable          = true
    asyncInvocationType    = false # FC 3.0: true = synchronous; false gets async retries, OnFailure
    eventSourceConfig      = { eventSourceType = "Default" }
    eventRuleFilterPattern = jsonencode(local.event_pattern)
  })
  depends_on = [alicloud_event_bridge_service_linked_role.send_to_fc]
}

resource "alicloud_fcv3_trigger" "actiontrail_tags" {
  function_name = alicloud_fcv3_function.events.function_name
  trigger_name  = "actiontrail-tags"
  trigger_type  = "eventbridge"
  qualifier     = "LATEST"
  trigger_config = jsonencode({
    triggerEnable          = true
    asyncInvocationType    = false # FC 3.0: true = synchronous; false gets async retries, OnFailure
    eventSourceConfig      = { eventSourceType = "Default" }
    eventRuleFilterPattern = jsonencode(local.tag_event_pattern)
  })
  depends_on = [alicloud_event_bridge_service_linked_role.send_to_fc]
}

resource "alicloud_fcv3_async_invoke_config" "events" {
  function_name                  = alicloud_fcv3_function.events.function_name
  max_async_retry_attempts       = var.async_retries
  max_async_event_age_in_seconds = 86400
  destination_config {
    on_failure {
      destination = "acs:mns:${local.region}:${local.account_id}:/topics/${var.failure_topic}/messages"
    }
  }
}

resource "alicloud_fcv3_concurrency_config" "events" {
  function_name        = alicloud_fcv3_function.events.function_name
  reserved_concurrency = var.events_concurrency
}
