/** What a tool is, as a model sees it: a leaf module that call/, realtime/ and tools/ all import. */

/** A function tool as the model sees it: name, description, JSON-schema parameters. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}
