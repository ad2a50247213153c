# Mints cookies and a cookie-store session with Rails' own ActionDispatch (Debian's ruby-actionpack),
# for tests/test_rails_cookies.py: reads a JSON list of jobs on stdin, prints a JSON list of the
# Cookie header each job's response would make the browser send ("name=value; name=value").
#
# Each job runs one request through Rails' middleware, ActionDispatch::Cookies around
# ActionDispatch::Session::CookieStore, configured through the env keys railties sets from
# config.action_dispatch.*; the app writes cookies.signed[...] / cookies.encrypted[...] and session[...].
#
# job: {"secret_key_base", "key_digest" ("sha1"|"sha256"), "signed_cookie_digest" ("SHA1"...),
#       "serializer" ("json"|"marshal"), "metadata" (use_cookies_with_metadata), "session_key",
#       "cookies": [{"jar": "signed"|"encrypted", "name", "value", "expires_in" (s)}], "session": {...}}
require "json"
require "openssl"
require "rack"
require "action_dispatch"
require "active_support/all"
require "active_support/messages/rotation_configuration"

# ActiveSupport 7.0's KeyGenerator with hash_digest_class: OpenSSL::Digest::SHA256 (what
# `load_defaults 7.0` sets); 6.1's KeyGenerator derives with SHA1 only, which sha1 jobs use as is.
class KeyGeneratorSHA256
  def initialize(secret, iterations:)
    @secret = secret
    @iterations = iterations
  end

  def generate_key(salt, key_size = 64)
    OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, OpenSSL::Digest::SHA256.new)
  end
end

def key_generator(job)
  generator =
    if job.fetch("key_digest", "sha1") == "sha256"
      KeyGeneratorSHA256.new(job["secret_key_base"], iterations: 1000)
    else
      ActiveSupport::KeyGenerator.new(job["secret_key_base"], iterations: 1000)
    end
  ActiveSupport::CachingKeyGenerator.new(generator)
end

def rails_env(job)
  {
    "action_dispatch.secret_key_base" => job["secret_key_base"],
    "action_dispatch.key_generator" => key_generator(job),
    "action_dispatch.signed_cookie_salt" => "signed cookie",
    "action_dispatch.encrypted_cookie_salt" => "encrypted cookie",
    "action_dispatch.encrypted_signed_cookie_salt" => "signed encrypted cookie",
    "action_dispatch.authenticated_encrypted_cookie_salt" => "authenticated encrypted cookie",
    "action_dispatch.use_authenticated_cookie_encryption" => true,
    "action_dispatch.encrypted_cookie_cipher" => "aes-256-gcm",
    "action_dispatch.signed_cookie_digest" => job.fetch("signed_cookie_digest", "SHA1"),
    "action_dispatch.cookies_serializer" => job.fetch("serializer", "json").to_sym,
    "action_dispatch.cookies_rotations" => ActiveSupport::Messages::RotationConfiguration.new,
    "action_dispatch.use_cookies_with_metadata" => job.fetch("metadata", true),
  }
end

def app_for(job)
  lambda do |env|
    jar = ActionDispatch::Request.new(env).cookie_jar
    job.fetch("cookies", []).each do |cookie|
      options = { value: cookie["value"] }
      options[:expires] = cookie["expires_in"].seconds if cookie.key?("expires_in")
      jar.public_send(cookie.fetch("jar"))[cookie.fetch("name")] = options
    end
    job.fetch("session", {}).each { |key, value| env["rack.session"][key] = value }
    [200, { "Content-Type" => "text/plain" }, ["ok"]]
  end
end

def mint(job)
  session_key = job.fetch("session_key", "_app_session")
  stack = ActionDispatch::Cookies.new(ActionDispatch::Session::CookieStore.new(app_for(job), key: session_key))
  env = Rack::MockRequest.env_for("http://127.0.0.1/", rails_env(job))
  _status, headers, _body = stack.call(env)
  set_cookies = headers.fetch("Set-Cookie", "").split("\n")
  set_cookies.map { |line| line.split(";", 2).first }.join("; ")
end

puts JSON.generate(JSON.parse($stdin.read).map { |job| mint(job) })
