output "sweep_function" {
  value = alicloud_fcv3_function.sweep.function_name
}

output "reimport_function" {
  value = alicloud_fcv3_function.reimport.function_name
}

output "events_function" {
  value = alicloud_fcv3_function.events.function_name
}

output "role_arn" {
  value = alicloud_ram_role.byok_keeper.arn
}
