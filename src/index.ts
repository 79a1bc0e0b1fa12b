// The entry point action.yml names, kept small: it lets Node cache the compiled action (a chunk of
// its own, loaded by the import below) before anything of it is compiled.
import { enableCompileCache } from './compile-cache'

enableCompileCache(process.env.RUNNER_TOOL_CACHE)
void import('./action').then(a => a.start())
