// Loads an OpenTelemetry SDK into commitd, so that its spans (docs/design.md,
// "Traces") are exported over OTLP/HTTP. Not a dependency of commitd: install
// the SDK next to it, then load this file before commitd starts:
//
//   npm install --no-save @opentelemetry/sdk-node@0.223.0 @opentelemetry/exporter-trace-otlp-http@0.223.0
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 node --import ./examples/otel.mjs dist/src/main.js
//
// The exporter reads the standard OTEL_* variables (endpoint, headers,
// OTEL_TRACES_SAMPLER and its argument). No auto-instrumentation is loaded:
// commitd makes its own spans and sends its own traceparent to participants.
// commitd exits once it has stopped (SIGTERM), so spans still waiting in the
// batch (OTEL_BSP_SCHEDULE_DELAY, 5 s by default) at that moment are lost.

import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { NodeSDK } from '@opentelemetry/sdk-node';

const sdk = new NodeSDK({
  serviceName: process.env.OTEL_SERVICE_NAME ?? 'commitd',
  traceExporter: new OTLPTraceExporter(),
});
sdk.start();
