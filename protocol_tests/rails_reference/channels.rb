# The conformance fixture's channels (see ../README.md), as a Rails app writes them.
require "base64"

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    def connect
      user = request.params["user"] || request.cookies["user"] || "anonymous"
      reject_unauthorized_connection if user == "reject"
      raise "connect raised on purpose" if user == "raise"
      sleep 1 if user == "slow"
      self.current_user = user
    end
  end
end

class FixtureError < StandardError; end

Room = Struct.new(:id) do
  def to_gid_param
    Base64.urlsafe_encode64("gid://cable-ref/Room/#{id}", padding: false)
  end
end

class EchoChannel < ActionCable::Channel::Base
  def subscribed = stream_from(stream)
  def echo(data) = transmit(data)
  def broadcast(data) = ActionCable.server.broadcast(stream, data)
  def ping_user = transmit({ user: current_user })
  def receive(data) = transmit({ received: data })
  def params_dump = transmit(params)
  def stop_streaming = stop_stream_from(stream)
  def transmit_string = transmit("just a string")
  def transmit_array = transmit([1, "two", { three: 3 }])
  def transmit_number = transmit(42)
  def transmit_nil = transmit(nil)
  def multi(data) = (1..data.fetch("n", 1).to_i).each { |i| transmit({ n: i }) }
  def burst(data) = (1..data.fetch("n", 1).to_i).each { |i| ActionCable.server.broadcast(stream, { seq: i }) }

  private

  def stream = "echo_#{params[:room]}"
end

class RejectChannel < ActionCable::Channel::Base
  def subscribed
    stream_from "reject_#{params[:room]}" if params[:stream]
    reject
  end
end

class StreamForChannel < ActionCable::Channel::Base
  def subscribed
    target ? stream_for(target) : reject
  end

  def whoami = transmit({ broadcasting: self.class.broadcasting_for(target) })
  def broadcast_model(data) = self.class.broadcast_to(target, data)

  private

  def target
    return Room.new(params[:room].to_s) unless params[:room].nil?
    params[:topic]&.to_s
  end
end

class RawStreamChannel < ActionCable::Channel::Base
  def subscribed
    stream = "raw_#{params[:room]}"
    if params[:coder] == "json"
      stream_from(stream, coder: ActiveSupport::JSON) { |message| transmit({ decoded: message }) }
    else
      stream_from(stream) { |message| transmit({ raw: message }) }
    end
  end
end

class GptChatChannel < ActionCable::Channel::Base
  CHUNKS = ["Hello", ", ", "world", "!"].freeze

  def subscribed = stream_from("public_#{params[:room]}")

  def send_message(data)
    CHUNKS.each { |chunk| ActionCable.server.broadcast("public_#{data['user_id']}", { content: chunk }) }
  end
end

class RaiseChannel < ActionCable::Channel::Base
  rescue_from FixtureError, with: :report

  def boom = raise("unhandled boom")
  def boom_handled = raise(FixtureError, "handled boom")
  def echo(data) = transmit(data)

  private

  def report(error) = transmit({ error: error.message, class: error.class.name })
end

class RaiseOnSubscribeChannel < ActionCable::Channel::Base
  def subscribed = raise("subscribed raised on purpose")
  def echo(data) = transmit(data)
end

class TickerChannel < ActionCable::Channel::Base
  periodically :tick, every: 0.5

  def subscribed
    @ticks = 0
  end

  private

  def tick
    @ticks += 1
    transmit({ tick: @ticks })
  end
end

class DeferredChannel < ActionCable::Channel::Base
  def subscribed
    transmit({ hello: "from subscribed" })
    names.each { |name| stream_from name }
  end

  def broadcast_both(data) = names.each { |name| ActionCable.server.broadcast(name, data) }

  private

  # Not "streams": that name is ActionCable::Channel::Streams' own.
  def names = ["deferred_a_#{params[:room]}", "deferred_b_#{params[:room]}"]
end

class PresenceChannel < ActionCable::Channel::Base
  def subscribed = stream_from(stream)
  def unsubscribed = ActionCable.server.broadcast(stream, { left: current_user })

  private

  def stream = "presence_#{params[:room]}"
end
