import * as core from '@actions/core'

/** The post phase: undo what must not outlive the job (the buildx builder, when one was created). */
export async function post(): Promise<void> {
  core.debug('post: nothing to clean up')
}
