import ArgumentParser
import Dispatch
import Foundation
import MoEEval
import MoEModels
import MoEServer
import MoETokenizer

/// `moe-eval serve`: an OpenAI-compatible completions server that lm-evaluation-harness's
/// `local-completions` model can evaluate, tokenizer included, fully offline.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a checkpoint over HTTP for lm-evaluation-harness (--model local-completions).",
        discussion: """
            Endpoints: POST /v1/completions (prompt as text or token ids; echo; logprobs; max_tokens 0 or more;
            greedy only, temperature 0; stop strings applied here), GET /v1/models, GET /health, and the remote
            tokenizer lm-eval uses with tokenizer_backend=remote: GET /tokenizer_info, POST /tokenize, POST /detokenize.
            Without --checkpoint it serves the bundled demo model. --port 0 picks a free port; the line
            "listening on http://HOST:PORT" on standard output gives it.

            Clients that stall are disconnected: a connection must send its headers within --header-timeout,
            a request's body within --body-timeout, and a kept-alive connection its next request within
            --idle-timeout. Beyond --max-connections open connections, new ones get 503 and are closed.
            Bodies declared or found larger than --max-body-bytes get 413 and the connection is closed.

            Examples:
              moe-eval serve --port 8000
              moe-eval serve --checkpoint ./outputs/checkpoint/step-1000 --config train.toml --tokenizer ./tokenizer
              lm_eval --model local-completions --tasks hellaswag --model_args \\
                base_url=http://127.0.0.1:8000/v1/completions,tokenizer_backend=remote,max_length=MAX_SEQ_LEN
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var computeOptions: ComputeOptions
    @OptionGroup var device: DeviceOptions

    @Option(help: "tokenizer.json file or folder (default: the config's hf_assets_path, or the demo tokenizer).")
    var tokenizer: String?

    @Option(help: "Address to listen on. Keep the loopback default unless the network is trusted: there is no authentication.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port).")
    var port = 8000

    @Option(
        name: .customLong("model-name"),
        help: "Name in /v1/models that requests' \"model\" must match (default: the checkpoint folder's name).")
    var modelName: String?

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body; larger ones get 413.")
    var maxBodyBytes = ServerLimits().maxBodyBytes

    @Option(name: .customLong("max-concurrency"), help: "Completion requests running or waiting at once; more get 503.")
    var maxConcurrency = ServerLimits().maxConcurrency

    @Option(name: .customLong("max-batch"), help: "Prompts in one completions request; more get 400.")
    var maxBatch = ServerLimits().maxPromptsPerRequest

    @Option(
        name: .customLong("max-connections"),
        help:
            "Connections open at once; more are answered 503 and closed (default: \(ConnectionLimits().maxConnections), lowered to fit the open-file limit)."
    )
    var maxConnections: Int?

    @Option(
        name: .customLong("header-timeout"), help: "Seconds a new connection has to send its request line and headers; then it is closed.")
    var headerTimeout = Self.seconds(ConnectionLimits().headerTimeout)

    @Option(name: .customLong("body-timeout"), help: "Seconds a request has to send its whole body after its headers; then it is closed.")
    var bodyTimeout = Self.seconds(ConnectionLimits().bodyTimeout)

    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a kept-alive connection may wait for its next request's headers; then it is closed.")
    var idleTimeout = Self.seconds(ConnectionLimits().idleTimeout)

    static let maxTimeoutSeconds = 86_400.0

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be ≥ 1024") }
        guard maxConcurrency >= 1 else { throw ValidationError("--max-concurrency must be ≥ 1") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be ≥ 1") }
        if let maxConnections, !(1...1_000_000).contains(maxConnections) {
            throw ValidationError("--max-connections must be between 1 and 1000000")
        }
        for (flag, seconds) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--idle-timeout", idleTimeout)] {
            guard seconds.isFinite, seconds > 0, seconds <= Self.maxTimeoutSeconds else {
                throw ValidationError(
                    "\(flag) must be a number of seconds above 0 and at most \(Int(Self.maxTimeoutSeconds)) (got \(seconds))")
            }
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The connection limits asked for, with the connection cap fitted under the open-file limit:
    /// a cap above it would let connections use up the descriptors the server needs to accept and answer.
    func connectionLimits() throws -> ConnectionLimits {
        var limits = ConnectionLimits()
        limits.headerTimeout = .milliseconds(Int((headerTimeout * 1000).rounded(.up)))
        limits.bodyTimeout = .milliseconds(Int((bodyTimeout * 1000).rounded(.up)))
        limits.idleTimeout = .milliseconds(Int((idleTimeout * 1000).rounded(.up)))
        let openFiles = ConnectionLimits.raiseOpenFileLimit() ?? Int.max
        let room = openFiles - ConnectionLimits.reservedFileDescriptors
        guard room >= 1 else {
            throw ServeError(
                description:
                    "the open-file limit (ulimit -n) is \(openFiles): serve needs more than \(ConnectionLimits.reservedFileDescriptors)")
        }
        if let maxConnections {
            guard maxConnections <= room else {
                throw ServeError(
                    description:
                        "--max-connections \(maxConnections) does not fit the open-file limit (ulimit -n \(openFiles), \(ConnectionLimits.reservedFileDescriptors) kept for the server): use at most \(room), or raise the limit"
                )
            }
            limits.maxConnections = maxConnections
        } else if limits.maxConnections > room {
            printError("serving at most \(room) connections at once: the open-file limit (ulimit -n) is \(openFiles)")
            limits.maxConnections = room
        }
        return limits
    }

    func run() throws {
        try reportingErrors {
            let connectionLimits = try connectionLimits()
            var spec = try device.placing(model.spec(defaultCheckpoint: "."))
            spec.compute = computeOptions.choice(default: .fp32)
            let inputs = try ModelInputs.resolve(spec, checkpointGiven: model.checkpoint != nil, tokenizer: tokenizer)
            let tokenizer = try inputs.loadTokenizer(for: .serving)!
            let loaded = try ModelLoader.load(inputs.spec)
            printError(
                String(
                    format: "loaded %@ in %.2f s (%@); %@ products (%@)", loaded.source.description, loaded.loadSeconds,
                    loaded.argsOrigin, loaded.compute.rawValue, loaded.computeReason))

            var limits = ServerLimits()
            limits.maxBodyBytes = maxBodyBytes
            limits.maxConcurrency = maxConcurrency
            limits.maxPromptsPerRequest = maxBatch
            let name = modelName ?? (inputs.demo != nil ? "moe-eval-demo" : Self.defaultName(for: inputs.spec.checkpoint))
            let engine = CompletionEngine(model: loaded.model, tokenizer: tokenizer, modelName: name, limits: limits)
            try Self.runBlocking { [host, port] in
                do {
                    try await CompletionServer.serve(
                        engine: engine, host: host, port: port,
                        connectionLimits: connectionLimits
                    ) { boundPort in
                        // Unbuffered: scripts wait for this line to learn the port.
                        FileHandle.standardOutput.write(
                            Data("listening on http://\(host):\(boundPort) (model \"\(name)\", max_seq_len \(engine.maxSeqLen))\n".utf8))
                    }
                } catch {
                    throw ServeError(description: "cannot serve on \(host):\(port): \(error)")
                }
            }
        }
    }

    /// The checkpoint folder's name, with its parent's for TorchTitan's `step-N` folders.
    static func defaultName(for checkpoint: URL) -> String {
        let last = checkpoint.standardizedFileURL.lastPathComponent
        guard last.hasPrefix("step-") else { return last }
        let parent = checkpoint.standardizedFileURL.deletingLastPathComponent()
        let run = parent.lastPathComponent == "checkpoint" ? parent.deletingLastPathComponent().lastPathComponent : parent.lastPathComponent
        return run.isEmpty ? last : "\(run)/\(last)"
    }

    /// Runs async work from this synchronous command (the root command is not async) and waits for it.
    static func runBlocking(_ work: @escaping @Sendable () async throws -> Void) throws {
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await work() } catch { outcome.set(error) }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Error?
        var error: Error? { lock.lock(); defer { lock.unlock() }; return stored }
        func set(_ error: Error) { lock.lock(); stored = error; lock.unlock() }
    }
}

struct ServeError: Error, CustomStringConvertible {
    let description: String
}
