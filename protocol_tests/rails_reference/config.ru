# The Rails side of the conformance suite: ActionCable (Debian's Rails 6.1) on puma, serving the
# fixture channels at /cable and the admin hooks at /__admin. Started by ./start.
require "json"
require "logger"
require "action_cable"
require "active_support/core_ext/hash/indifferent_access"
require_relative "channels"

ActionCable.server.config.tap do |config|
  # CABLE_REDIS_URL: share broadcasts through Redis (the interop tests run ours beside it).
  # Indifferent access, as the Rails railtie gives cable.yml: the adapter reads "adapter",
  # the channel prefix is read as :channel_prefix.
  config.cable = if ENV["CABLE_REDIS_URL"]
    { "adapter" => "redis", "url" => ENV["CABLE_REDIS_URL"], "channel_prefix" => ENV["CABLE_CHANNEL_PREFIX"] }.compact
  else
    { "adapter" => "async" }
  end.with_indifferent_access
  config.connection_class = -> { ApplicationCable::Connection }
  config.allowed_request_origins = ["http://localhost:3000", %r{https?://allowed\.example}]
  config.allow_same_origin_as_host = true
  config.logger = Logger.new($stderr, level: ENV.fetch("CABLE_LOG_LEVEL", "info"))
  config.worker_pool_size = 4
end

Admin = lambda do |env|
  request = Rack::Request.new(env)
  reply = ->(body) { [200, { "Content-Type" => "application/json" }, [JSON.generate(body)]] }
  case [request.request_method, request.path_info]
  when ["POST", "/broadcast"]
    ActionCable.server.broadcast(request.params["stream"], JSON.parse(request.body.read))
    reply.({ ok: true })
  when ["POST", "/disconnect"]
    remote = ActionCable.server.remote_connections.where(current_user: request.params["user"])
    if remote.method(:disconnect).arity.zero? # Rails < 7.1 has no reconnect argument
      remote.disconnect
    else
      remote.disconnect(reconnect: request.params["reconnect"] != "false")
    end
    reply.({ ok: true })
  when ["POST", "/restart"]
    ActionCable.server.restart
    reply.({ ok: true })
  when ["GET", "/stats"]
    reply.({ connections: ActionCable.server.connections.size })
  when ["GET", "/statistics"]
    connections = ActionCable.server.open_connections_statistics
    reply.({ connections: connections.map { |stats| stats.merge(started_at: stats[:started_at].to_f) } })
  when ["GET", "/health"]
    reply.({ ok: true, server: "rails", version: ActionCable.version.to_s })
  else
    [404, { "Content-Type" => "text/plain" }, ["no such admin hook"]]
  end
end

map("/cable") { run ActionCable.server }
map("/__admin") { run Admin }
