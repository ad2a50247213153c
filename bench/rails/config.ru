# The Rails side of `python -m bench` (see ../README.md): the conformance fixture as it is (its
# channels at /cable, its admin hooks at /__admin), plus a GptChatChannel that really streams an
# answer from an OpenAI-compatible server, the way a Rails app without extra gems writes it.
# Served by puma like protocol_tests/rails_reference/start: one process, threads 4:16.
require "net/http"
require "uri"

fixture = File.expand_path("../../protocol_tests/rails_reference/config.ru", __dir__)
instance_eval(File.read(fixture), fixture)

# The fixture's GptChatChannel answers with four canned chunks; this one calls the model.
Object.send(:remove_const, :GptChatChannel)

# `send_message` runs where ActionCable runs every action: on its worker pool (4 threads). The
# HTTP call holds a worker for the whole answer, and the pool also delivers every broadcast to
# the subscribers (Rails 6.1 `worker_pool_stream_handler`). That is what a Rails user gets
# unless the call moves to a job; the benchmark keeps it.
class GptChatChannel < ActionCable::Channel::Base
  ENDPOINT = URI("#{ENV.fetch('OPENAI_BASE_URL', 'http://127.0.0.1:8001/v1')}/chat/completions")

  def subscribed = stream_from(room)

  def send_message(data)
    request = Net::HTTP::Post.new(ENDPOINT, "Content-Type" => "application/json",
                                            "Authorization" => "Bearer #{ENV.fetch('OPENAI_API_KEY', 'none')}")
    request.body = JSON.generate({ model: "gpt-4o-mini", stream: true,
                                   messages: [{ role: "user", content: data["user_content"].to_s }] })
    Net::HTTP.start(ENDPOINT.host, ENDPOINT.port, read_timeout: 60) do |http|
      http.request(request) do |response|
        raise "the model answered HTTP #{response.code}" unless response.is_a?(Net::HTTPSuccess)

        stream_deltas(response) { |delta| ActionCable.server.broadcast(room, { content: delta }) }
      end
    end
    ActionCable.server.broadcast(room, { content: "", event: "done" })
  rescue StandardError => e
    ActionCable.server.broadcast(room, { content: "", event: "error", error: e.message })
  end

  private

  def room = "public_#{params[:room]}"

  # Server-sent events: "data: {chunk JSON}" lines, until "data: [DONE]".
  def stream_deltas(response)
    buffer = +""
    response.read_body do |bytes|
      buffer << bytes
      while (newline = buffer.index("\n"))
        line = buffer.slice!(0, newline + 1).strip
        next unless line.start_with?("data: ") && line != "data: [DONE]"

        delta = JSON.parse(line.delete_prefix("data: ")).dig("choices", 0, "delta", "content")
        yield delta if delta && !delta.empty?
      end
    end
  end
end
